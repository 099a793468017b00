/**
 * The benchmarks' clock and tick source, shared by the producers (taskwire's
 * sim, the bare baselines) and the latency clients, so every layer stamps and
 * paces events the same way.
 */

/** Told each clock value (µs) an event is stamped with, as it is stamped (bench/server-path.ts). */
export type StampProbe = (us: number) => void;

/** Wall-clock microseconds, comparable across processes on one machine. */
export function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/**
 * Calls `emit(n)` on 1 ms ticks with the number of events due at
 * `perSecond`, until the returned function is called. A tick that comes late
 * makes up at most `catchUpMs` of backlog (default 10 ms; the rest is
 * skipped), so for latency a stalled event loop does not turn into one huge
 * burst.
 */
export function everyTick(perSecond: number, emit: (n: number) => void, catchUpMs = 10): () => void {
  let last = performance.now();
  let carry = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    carry += (Math.min(now - last, catchUpMs) / 1000) * perSecond;
    last = now;
    const n = Math.floor(carry);
    carry -= n;
    if (n > 0) emit(n);
  }, 1);
  return () => clearInterval(timer);
}
