/**
 * Node (V8): keeps room in the old generation above what is live, so that a
 * small heap is not collected in full on nearly every young-generation fill.
 *
 * After a major collection V8 sets the old generation's limit to
 * max(live x factor, live + 8 MB) plus the young generation's capacity
 * (heap-controller.cc, CalculateAllocationLimit), and starts incremental
 * marking once the room left is below the young generation's capacity
 * (heap.cc, IncrementalMarkingLimitReached). A long-running server's young
 * generation grows to its 16 MB semi-spaces; with ~16 MB live the room left
 * after a collection is already below that, so every young fill becomes a
 * major collection instead of a scavenge. `taskwire serve` with the sim at
 * 10,000 exits/s and no subscriber: 53 major collections against 24 young
 * ones in 80 s; with this, 7 against 60. Each pauses the event loop for
 * milliseconds and its concurrent marking takes CPU from clients on the same
 * machine (BENCHMARKS.md, "Major collections in the server's process").
 *
 * This sets V8's heap growing factor (`--heap-growing-percent`, read each
 * time V8 recomputes the limit) after every major collection, from the old
 * generation's size then, so that the next limit is `headroomBytes` above it.
 * The flag replaces V8's own factor (1.1-4.0, from its GC and mutator
 * speeds) rather than bounding it, so it is set only while the old
 * generation is under twice the headroom, and never above V8's own ceiling
 * of 4.0; a larger heap is left to V8 (flag 0). It is process-wide: the
 * netlink reader's worker gets the same factor.
 */
import { getHeapSpaceStatistics, setFlagsFromString } from "node:v8";
import { constants, PerformanceObserver } from "node:perf_hooks";

/** At or below this growth (%), V8's own factor is left in charge (flag 0). */
const V8_OWN_PERCENT = 50;

/** The most growth asked for: V8's own ceiling (a factor of 4), so a tiny heap gets less room than asked. */
const MAX_PERCENT = 300;

/**
 * The `--heap-growing-percent` that keeps `headroomBytes` above `liveBytes`
 * (0: V8's own factor), in steps of 10 so that small changes in what is live
 * do not reset the flag after every collection.
 */
export function growingPercentFor(liveBytes: number, headroomBytes: number): number {
  if (!Number.isFinite(liveBytes) || liveBytes <= 0) throw new RangeError(`liveBytes must be > 0, got ${liveBytes}`);
  if (!Number.isFinite(headroomBytes) || headroomBytes < 0) {
    throw new RangeError(`headroomBytes must be >= 0, got ${headroomBytes}`);
  }
  const percent = Math.ceil((100 * headroomBytes) / liveBytes / 10) * 10;
  return percent <= V8_OWN_PERCENT ? 0 : Math.min(percent, MAX_PERCENT);
}

/** What the headroom keeper reads and sets (V8's, unless a test passes its own). */
export interface HeapControls {
  /** Bytes of the old generation in use now (what V8 computes its limit from). */
  used(): number;
  /** Sets `--heap-growing-percent`. */
  setGrowingPercent(percent: number): void;
  /** Calls `onMajor` after each major collection; returns the undo. */
  onMajorCollection(onMajor: () => void): () => void;
}

/** V8's young-generation spaces (not part of the old generation's limit). */
const YOUNG = new Set(["new_space", "new_large_object_space"]);

/** A "gc" performance entry's kind (perf_hooks constants.NODE_PERFORMANCE_GC_*), which Node gives in its detail. */
export function gcKindOf(entry: PerformanceEntry): number | undefined {
  return (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
}

/** V8's controls in this process. */
export function v8HeapControls(): HeapControls {
  return {
    used: () =>
      getHeapSpaceStatistics().reduce(
        (sum, space) => YOUNG.has(space.space_name) ? sum : sum + space.space_used_size,
        0,
      ),
    setGrowingPercent: (percent) => setFlagsFromString(`--heap-growing-percent=${percent}`),
    onMajorCollection(onMajor) {
      const observer = new PerformanceObserver((list) => {
        if (list.getEntries().some((e) => gcKindOf(e) === constants.NODE_PERFORMANCE_GC_MAJOR)) onMajor();
      });
      observer.observe({ entryTypes: ["gc"] });
      return () => observer.disconnect();
    },
  };
}

/**
 * Keeps `headroomBytes` of room above the live heap from now on (see the
 * module comment); returns the undo, which hands the factor back to V8.
 */
export function keepHeapHeadroom(headroomBytes: number, controls: HeapControls = v8HeapControls()): () => void {
  growingPercentFor(1, headroomBytes); // validates before anything is set
  let current = -1;
  const apply = (): void => {
    const percent = growingPercentFor(Math.max(1, controls.used()), headroomBytes);
    if (percent === current) return;
    controls.setGrowingPercent(percent);
    current = percent;
  };
  apply();
  const stop = controls.onMajorCollection(apply);
  return () => {
    stop();
    if (current !== 0) controls.setGrowingPercent(0);
  };
}
