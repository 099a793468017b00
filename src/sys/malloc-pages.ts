/**
 * Whether malloc's heap is in transparent huge pages, for `serve`'s start-up
 * lines. glibc reads `GLIBC_TUNABLES` once, at process start, so a server
 * started without `glibc.malloc.hugetlb=1` (npm start, deploy/ and the image
 * set it) cannot take it up itself; it can only say so. Under THP mode
 * "always" the kernel backs the heap with huge pages anyway; under "never"
 * nothing asks for them.
 */
import { readFileSync } from "node:fs";

/** The tunable the project's start paths set. */
export const MALLOC_HUGE_PAGES = "glibc.malloc.hugetlb=1";

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
  if (mode === "always") return "malloc heap: transparent huge pages (the host's THP mode is always)";
  if (mode !== "madvise") return undefined;
  if (/(?:^|:)glibc\.malloc\.hugetlb=[12](?::|$)/.test(tunables ?? "")) {
    return `malloc heap: transparent huge pages (GLIBC_TUNABLES=${tunables})`;
  }
  return `malloc heap: 4 KiB pages; start the server with GLIBC_TUNABLES=${MALLOC_HUGE_PAGES} in its environment ` +
    "for huge pages, about 1 us less CPU per record in exit storms (npm start, deploy/taskwire.service and the " +
    "image set it; README, Performance)";
}
