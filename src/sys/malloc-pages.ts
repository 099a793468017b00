/**
 * Whether malloc's heap is in transparent huge pages, for `serve`'s start-up
 * lines. glibc reads `GLIBC_TUNABLES` once, at process start, so a server
 * started without `glibc.malloc.hugetlb=1` (npm start, deploy/ and the image
 * set it, with the thresholds that keep freed heap for reuse) cannot take it
 * up itself; it can only say so. Under THP mode
 * "always" the kernel backs the heap with huge pages anyway; under "never"
 * nothing asks for them.
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

/** The start-up line on malloc's pages; undefined where there is nothing to say (no THP on this host, or unknown). */
export function mallocPagesLine(tunables: string | undefined, mode: string | undefined): string | undefined {
  if (mode === "always") return `malloc heap: transparent huge pages (the host's THP mode is always)${reuse(tunables)}`;
  if (mode !== "madvise") return undefined;
  if (/(?:^|:)glibc\.malloc\.hugetlb=[12](?::|$)/.test(tunables ?? "")) {
    return `malloc heap: transparent huge pages (GLIBC_TUNABLES=${tunables})${reuse(tunables)}`;
  }
  return `malloc heap: 4 KiB pages; start the server with GLIBC_TUNABLES=${MALLOC_TUNABLES} in its environment ` +
    "for huge pages, about 1 us less CPU per record in exit storms (npm start, deploy/taskwire.service and the " +
    "image set it; README, Performance)";
}

// The advice on freed heap, where the tunables do not already keep it.
function reuse(tunables: string | undefined): string {
  if (/(?:^|:)glibc\.malloc\.trim_threshold=/.test(tunables ?? "")) return "";
  return `; freed heap goes back to the kernel at once and each exit storm faults it in again: add ${MALLOC_REUSE} ` +
    "to GLIBC_TUNABLES to keep up to 32 MiB of it for reuse (a third of the page faults in a storm)";
}
