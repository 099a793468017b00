/**
 * How busy the event loop is, sampled every 100 ms from
 * performance.eventLoopUtilization() (Node; where a runtime lacks it, the
 * loop reads as idle). Streams use it to let batches grow when the loop is
 * saturated: a thousand streams each sending a few events per wake-up spend
 * the loop on per-message overhead, and the loop is also where records are
 * dispatched.
 */
import { performance } from "node:perf_hooks";

type Elu = { idle: number; active: number; utilization: number };
type EluFn = (a?: Elu, b?: Elu) => Elu;

/** A running meter; `close()` stops its timer. */
export interface LoadMeter {
  /** Share of the last interval the loop was busy, 0..1. */
  readonly utilization: number;
  /** How long a stream that just sent a partial batch waits: 0 normally, 5-20 ms while the loop is saturated. */
  lingerMs(): number;
  close(): void;
}

/** Starts a meter (its timer does not keep the process alive). */
export function createLoadMeter(intervalMs = 100): LoadMeter {
  const elu = (performance as { eventLoopUtilization?: EluFn }).eventLoopUtilization?.bind(performance);
  let utilization = 0;
  let last = elu?.();
  const timer = setInterval(() => {
    if (elu === undefined || last === undefined) return;
    const now = elu();
    utilization = elu(now, last).utilization;
    last = now;
  }, intervalMs);
  (timer as { unref?: () => void }).unref?.();
  return {
    get utilization() {
      return utilization;
    },
    lingerMs: () => (utilization >= 0.9 ? 20 : utilization >= 0.75 ? 5 : 0),
    close: () => clearInterval(timer),
  };
}
