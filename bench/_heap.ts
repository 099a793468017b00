/**
 * The bench processes' heaps, kept as `taskwire serve` keeps its own
 * (--heap-headroom-mb; Node only). BENCH_HEAP_HEADROOM_MB=0 leaves V8's own
 * sizing, for A/B runs. And the latency bench's view of them: the
 * collections in a window, and a full collection between rounds.
 */
import { constants, PerformanceObserver } from "node:perf_hooks";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { gcKindOf } from "../src/runtime/heap-headroom.ts";
import { DEFAULT_HEAP_HEADROOM_BYTES, type HeapHeadroom, keepHeapHeadroom } from "../src/runtime/listen.ts";

/** Keeps this process's heap headroom; returns what was done and the MiB asked for. */
export async function keepBenchHeapHeadroom(): Promise<HeapHeadroom & { mib: number }> {
  const mib = Number(process.env["BENCH_HEAP_HEADROOM_MB"] ?? DEFAULT_HEAP_HEADROOM_BYTES / 1024 ** 2);
  return { ...(await keepHeapHeadroom(mib * 1024 ** 2)), mib };
}

/** A process's collections over a window, and their pauses. */
export interface GcTally {
  minor: number;
  major: number;
  pauseMs: number;
}

let gc: (() => void) | undefined;

/** A full collection now (V8's gc(), exposed for this process at run time on first use). */
export function collectGarbage(): void {
  if (gc === undefined) {
    setFlagsFromString("--expose-gc");
    gc = runInNewContext("gc") as () => void;
  }
  gc();
}

/**
 * Counts this process's collections until the returned function is called.
 * A major collection's pause is a stream's latency for every event due
 * during it (5-20 ms on this VM: see BENCHMARKS.md).
 */
export function watchGc(): () => GcTally {
  const tally: GcTally = { minor: 0, major: 0, pauseMs: 0 };
  const count = (entries: PerformanceEntry[]) => {
    for (const e of entries) {
      const kind = gcKindOf(e);
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) tally.major++;
      else if (kind === constants.NODE_PERFORMANCE_GC_MINOR) tally.minor++;
      tally.pauseMs += e.duration;
    }
  };
  const observer = new PerformanceObserver((list) => count(list.getEntries()));
  observer.observe({ entryTypes: ["gc"] });
  // Entries not yet delivered to the callback are counted too.
  return () => (count(observer.takeRecords()), observer.disconnect(), tally);
}
