/**
 * Whether malloc's heap is in transparent huge pages, and whether glibc keeps
 * freed heap for reuse, for `serve`'s start-up lines. glibc reads
 * `GLIBC_TUNABLES` once, at process start, so a server started without the
 * tunables npm start, deploy/ and the image set cannot take them up itself;
 * it can only say which to add. Under THP mode "always" the kernel backs the
 * heap with huge pages anyway; under "never" nothing asks for them, but freed
 * heap is still worth keeping.
 */
import { readFileSync } from "node:fs";

/** The tunable that puts malloc's heap in transparent huge pages. */
export const MALLOC_HUGE_PAGES = "glibc.malloc.hugetlb=1";

/**
 * The tunables that keep freed heap for reuse. glibc's defaults give it back
 * at once: after the first large block is freed, its mmap threshold rises to
 * that block's size and its trim threshold to twice that (~1.1 MiB once a
 * 568 KB stats slab is freed), so each slab freed at the heap's top is
 * trimmed and the next one faulted in afresh. A fixed 4 MiB mmap threshold
 * (which also stops the thresholds moving) and a 32 MiB trim threshold keep
 * up to 32 MiB of free heap resident instead.
 */
export const MALLOC_REUSE = "glibc.malloc.trim_threshold=33554432:glibc.malloc.mmap_threshold=4194304";

/** The tunables the project's start paths set (npm start, deploy/taskwire.service, the image). */
export const MALLOC_TUNABLES = `${MALLOC_HUGE_PAGES}:${MALLOC_REUSE}`;

/** The host's THP mode ("always", "madvise", "never"), or undefined where it cannot be read (not Linux). */
export function thpMode(path = "/sys/kernel/mm/transparent_hugepage/enabled"): string | undefined {
  try {
    return /\[(\w+)\]/.exec(readFileSync(path, "utf8"))?.[1];
  } catch {
    return undefined;
  }
}

/** The start-up line on malloc's pages; undefined where there is nothing to say (not Linux, or all is set). */
export function mallocPagesLine(tunables: string | undefined, mode: string | undefined): string | undefined {
  const set = parseTunables(tunables);
  const missing = [...(mode === "madvise" && !hugePages(set) ? [MALLOC_HUGE_PAGES] : []), ...reuseMissing(set)];
  const pages = pagesOf(set, mode, tunables);
  const unknown = [...set.keys()].filter((name) => !MALLOC_TUNABLE_NAMES.has(name)).map((n) => `glibc.malloc.${n}`);
  const ignored = unknown.length === 0 ? "" : `; glibc ignores ${unknown.join(", ")} (no such tunable: misspelt?)`;
  if (pages === undefined || (mode === "never" && missing.length === 0 && ignored === "")) return undefined;
  if (missing.length === 0) return `malloc heap: ${pages}${ignored}`;
  return `malloc heap: ${pages}${ignored}; add ${missing.join(":")} to GLIBC_TUNABLES for ${reasons(missing)} ` +
    "(npm start, deno task start, deploy/taskwire.service and the image set them; README, Performance)";
}

// glibc's malloc tunables (the manual's "Memory Allocation Tunables"); glibc passes over any other name silently.
const MALLOC_TUNABLE_NAMES = new Set([
  "check",
  "top_pad",
  "perturb",
  "mmap_threshold",
  "trim_threshold",
  "mmap_max",
  "arena_max",
  "arena_test",
  "tcache_max",
  "tcache_count",
  "tcache_unsorted_limit",
  "mxfast",
  "hugetlb",
]);

// What the heap is in; undefined where the host's THP mode is unknown (not Linux, or unreadable).
function pagesOf(set: Map<string, number>, mode: string | undefined, tunables: string | undefined): string | undefined {
  if (mode === undefined) return undefined;
  if (set.get("hugetlb") === 2) return `hugetlbfs huge pages (GLIBC_TUNABLES=${tunables})`;
  if (mode === "always") return "transparent huge pages (the host's THP mode is always)";
  if (mode === "madvise" && hugePages(set)) return `transparent huge pages (GLIBC_TUNABLES=${tunables})`;
  return mode === "madvise" ? "4 KiB pages" : `4 KiB pages (the host's THP mode is ${mode})`;
}

const hugePages = (set: Map<string, number>) => set.get("hugetlb") === 1 || set.get("hugetlb") === 2;

// The thresholds missing or set too low to keep freed heap. Setting either one stops glibc moving both, so a
// trim threshold alone leaves the mmap threshold at 128 KiB: every slab its own mmap, faulted in afresh.
function reuseMissing(set: Map<string, number>): string[] {
  const low = (name: string, least: number) => !((set.get(name) ?? 0) >= least);
  return MALLOC_REUSE.split(":").filter((t) => {
    const [name, value] = t.slice("glibc.malloc.".length).split("=");
    return low(name!, Number(value) / 4); // 1 MiB and 8 MiB at least: a slab is 568 KiB
  });
}

function reasons(missing: string[]): string {
  const huge = missing.includes(MALLOC_HUGE_PAGES)
    ? ["huge pages (about 1 us less CPU per record in exit storms)"]
    : [];
  const reuse = missing.length > huge.length
    ? ["freed heap kept for reuse, not given back to the kernel and faulted in again (a third of the page faults)"]
    : [];
  return [...huge, ...reuse].join(" and ");
}

// GLIBC_TUNABLES' glibc.malloc.* entries as numbers (glibc takes decimal and 0x hex; it ignores spaces around).
function parseTunables(tunables: string | undefined): Map<string, number> {
  const set = new Map<string, number>();
  for (const entry of (tunables ?? "").split(":")) {
    const m = /^\s*glibc\.malloc\.(\w+)\s*=\s*(\S+)\s*$/.exec(entry);
    if (m !== null) set.set(m[1]!, Number(m[2]));
  }
  return set;
}
