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

// MALLOC_REUSE's thresholds and the least of each that still keeps a 568 KiB slab's heap: a quarter.
const REUSE_LEAST = MALLOC_REUSE.split(":").map((entry) => {
  const [name = "", value] = entry.slice("glibc.malloc.".length).split("=");
  return { entry, name, least: Number(value) / 4 };
});

/** The tunables the project's start paths set (npm start, deno task start, deploy/taskwire.service, the image). */
export const MALLOC_TUNABLES = `${MALLOC_HUGE_PAGES}:${MALLOC_REUSE}`;

/** The host's THP mode ("always", "madvise", "never"), or undefined where it cannot be read (not Linux). */
export function thpMode(path = "/sys/kernel/mm/transparent_hugepage/enabled"): string | undefined {
  try {
    return /\[(\w+)\]/.exec(readFileSync(path, "utf8"))?.[1];
  } catch {
    return undefined;
  }
}

/** What the line knows of the process beyond its environment. */
export interface MallocFacts {
  /** The glibc the process runs on ("2.36"), where the runtime tells it (glibcVersion). */
  readonly glibc?: string | undefined;
}

/** The start-up line on malloc's pages; undefined where there is nothing to say (not Linux, or all is set). */
export function mallocPagesLine(
  tunables: string | undefined,
  mode: string | undefined,
  facts: MallocFacts = {},
): string | undefined {
  // glibc before 2.35 has no hugetlb tunable: it ignores one given, and none is asked for
  const hugetlbKnown = facts.glibc === undefined || !olderThan(facts.glibc, [2, 35]);
  const { set, ignored } = parseTunables(tunables, { hugetlbKnown, glibc: facts.glibc });
  const askHuge = mode === "madvise" && !hugePages(set) && hugetlbKnown;
  const missing = [...(askHuge ? [MALLOC_HUGE_PAGES] : []), ...reuseMissing(set)];
  const pages = pagesOf(set, mode, tunables);
  const skipped = ignored.length === 0 ? "" : `; glibc ignores ${ignored.join(", ")}`;
  if (pages === undefined || (mode === "never" && missing.length === 0 && skipped === "")) return undefined;
  if (missing.length === 0) return `malloc heap: ${pages}${skipped}`;
  return `malloc heap: ${pages}${skipped}; set ${missing.join(":")} in GLIBC_TUNABLES for ${reasons(missing)} ` +
    "(npm start, deno task start, deploy/ and the image set them where GLIBC_TUNABLES is unset; README, Performance)";
}

/** The glibc this process runs on, where the runtime says (Node's process report); undefined elsewhere. */
export function glibcVersion(): string | undefined {
  // Deno's process report answers too, but with a glibc of its own (2.38 on this project's 2.36 hosts).
  if ("Deno" in globalThis || "Bun" in globalThis) return undefined;
  try {
    const report = (process as { report?: { getReport?: () => unknown } }).report?.getReport?.();
    const version = (report as { header?: { glibcVersionRuntime?: unknown } } | undefined)?.header
      ?.glibcVersionRuntime;
    return typeof version === "string" ? version : undefined;
  } catch {
    return undefined;
  }
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
  if (set.get("hugetlb") === 2) {
    return `hugetlbfs huge pages where the host reserves them (HugePages_Total in /proc/meminfo), else 4 KiB pages ` +
      `(GLIBC_TUNABLES=${tunables})`;
  }
  if (mode === "always") return "transparent huge pages (the host's THP mode is always)";
  if (mode === "madvise" && hugePages(set)) return `transparent huge pages (GLIBC_TUNABLES=${tunables})`;
  return mode === "madvise" ? "4 KiB pages" : `4 KiB pages (the host's THP mode is ${mode})`;
}

const hugePages = (set: Map<string, number>) => set.get("hugetlb") === 1 || set.get("hugetlb") === 2;

// The thresholds missing or set too low to keep freed heap. Setting either one stops glibc moving both, so a
// trim threshold alone leaves the mmap threshold at 128 KiB: every slab its own mmap, faulted in afresh.
function reuseMissing(set: Map<string, number>): string[] {
  return REUSE_LEAST.filter(({ name, least }) => !((set.get(name) ?? 0) >= least)).map(({ entry }) => entry);
}

function reasons(missing: string[]): string {
  const huge = missing.includes(MALLOC_HUGE_PAGES)
    ? ["huge pages (about 1 us less CPU per record in exit storms)"]
    : [];
  const reuse = missing.length > huge.length ? ["freed heap kept for reuse (fewer page faults in exit storms)"] : [];
  return [...huge, ...reuse].join(" and ");
}

// GLIBC_TUNABLES' glibc.malloc.* entries as glibc (2.36) reads them, and the ones it passes over silently: an entry
// with a space before or in its name, a name it does not have (glibc.malloc.hugetlb before 2.35).
function parseTunables(tunables: string | undefined, o: { hugetlbKnown: boolean; glibc: string | undefined }) {
  const set = new Map<string, number>();
  const ignored: string[] = [];
  for (const entry of (tunables ?? "").split(":")) {
    if (!entry.includes("glibc.malloc")) continue;
    const m = /^glibc\.malloc\.(\w+)=(.*)$/s.exec(entry);
    if (m === null) ignored.push(`"${entry}" (a space in or around the name, or no "=")`);
    else if (!MALLOC_TUNABLE_NAMES.has(m[1]!)) ignored.push(`glibc.malloc.${m[1]} (no such tunable: misspelt?)`);
    else if (m[1] === "hugetlb" && !o.hugetlbKnown) {
      ignored.push(`glibc.malloc.hugetlb (glibc ${o.glibc} has none: 2.35 and later)`);
    } else set.set(m[1]!, strtoul(m[2]!));
  }
  return { set, ignored };
}

// A tunable's number as glibc's _dl_strtoul reads it: leading spaces, then 0x hex, 0 octal or decimal digits,
// up to the first other character (2.36 ignores the rest: "1e7" is 1).
function strtoul(value: string): number {
  const m = /^\s*(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))/.exec(value);
  if (m === null) return 0;
  return m[1] !== undefined ? parseInt(m[1], 16) : m[2] !== undefined ? parseInt(m[2], 8) : Number(m[3]);
}

function olderThan(version: string, [major, minor]: [number, number]): boolean {
  const [a = 0, b = 0] = version.split(".").map(Number);
  return a < major || (a === major && b < minor);
}
