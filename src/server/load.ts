/**
 * How busy the event loop is, from performance.eventLoopUtilization() (Node;
 * where a runtime lacks it, the loop reads as idle), sampled when read and at
 * most every 100 ms: over the time since the last sample. It has no timer: an
 * idle server is not woken to measure its idleness (a wakeup costs tens of
 * microseconds on a paravirtualized host, and a 100 ms timer was a tenth of
 * an idle server's wakeups). Streams use it to let batches grow when the loop is
 * saturated: a thousand streams each sending a few events per wake-up spend
 * the loop on per-message overhead, and the loop is also where records are
 * dispatched.
 *
 * Saturated means the loop spent the CPU time, not just the wall time.
 * Utilization counts the whole span of each callback as busy, also while the
 * process waits for a CPU: on a shared CPU, a busier process (a client, say)
 * stretches the server's callbacks, and utilization reads 0.75-0.9 with the
 * server doing a quarter of that. A linger then delays every record 5-20 ms
 * while the loop has no backlog at all (measured: the latency bench's p99
 * went to 3 ms in such rounds). So the linger follows the lesser of the
 * loop's utilization and the process's CPU time over the same interval.
 */
import { performance } from "node:perf_hooks";

type Elu = { idle: number; active: number; utilization: number };
type EluFn = (a?: Elu, b?: Elu) => Elu;

/** A meter, read as streams send (lingerMs) and metrics are scraped (utilization). */
export interface LoadMeter {
  /** Share of the time since the last sample (100 ms at least) the loop was busy (wall time), 0..1. */
  readonly utilization: number;
  /** Share of that time the loop was busy on a CPU: the lesser of utilization and the process's CPU time. */
  readonly saturation: number;
  /** How long a stream that just sent a partial batch waits: 0 normally, 5-20 ms while the loop is saturated. */
  lingerMs(): number;
}

/** What a meter reads; the runtime's by default (tests pass their own). */
export interface LoadSamplers {
  /** performance.eventLoopUtilization; undefined where the runtime lacks it (the loop reads as idle). */
  readonly elu?: EluFn | undefined;
  /** The process's CPU time so far, µs (user + system); undefined where unknown (utilization alone counts). */
  readonly cpuUs?: (() => number) | undefined;
  /** A monotonic clock, ms. */
  readonly nowMs: () => number;
}

/** The runtime's samplers. */
export function runtimeSamplers(): LoadSamplers {
  const usage = (globalThis as { process?: { cpuUsage?: () => { user: number; system: number } } }).process?.cpuUsage;
  return {
    elu: (performance as { eventLoopUtilization?: EluFn }).eventLoopUtilization?.bind(performance),
    cpuUs: usage === undefined ? undefined : () => {
      const u = usage();
      return u.user + u.system;
    },
    nowMs: () => performance.now(),
  };
}

/** The linger for a saturation: 20 ms at 0.9 and above, 5 ms at 0.75 and above, else none. */
export function lingerFor(saturation: number): number {
  return saturation >= 0.9 ? 20 : saturation >= 0.75 ? 5 : 0;
}

// The process's CPU time over an interval as a share of its wall time; 1 (no correction) where unknown.
function cpuShare(fromUs: number | undefined, toUs: number | undefined, elapsedMs: number): number {
  if (fromUs === undefined || toUs === undefined || elapsedMs <= 0) return 1;
  return (toUs - fromUs) / 1000 / elapsedMs;
}

/** Starts a meter: it samples on a read at least `intervalMs` after its last sample. */
export function createLoadMeter(intervalMs = 100, samplers: LoadSamplers = runtimeSamplers()): LoadMeter {
  const { elu, cpuUs, nowMs } = samplers;
  let utilization = 0;
  let saturation = 0;
  let last = elu?.();
  let lastCpu = cpuUs?.();
  let lastAt = nowMs();
  const sample = (): void => {
    const at = nowMs();
    if (at - lastAt < intervalMs || elu === undefined || last === undefined) return;
    const now = elu(), cpu = cpuUs?.();
    utilization = elu(now, last).utilization;
    saturation = Math.min(utilization, cpuShare(lastCpu, cpu, at - lastAt));
    [last, lastCpu, lastAt] = [now, cpu, at];
  };
  return {
    get utilization() {
      sample();
      return utilization;
    },
    get saturation() {
      sample();
      return saturation;
    },
    lingerMs: () => (sample(), lingerFor(saturation)),
  };
}
