/**
 * The benchmarks' clock and tick source, shared by the producers (taskwire's
 * sim, the bare baselines) and the latency clients, so every layer stamps and
 * paces events the same way.
 */

/** Told each clock value (µs) an event is stamped with, as it is stamped (bench/server-path.ts). */
export type StampProbe = (us: number) => void;

/**
 * Microseconds of CLOCK_MONOTONIC plus 2^50, comparable across processes on
 * one machine. One clock read, the same in every process: the wall clock of
 * `performance.timeOrigin + performance.now()`, used until the fortieth
 * session, adds each process's own error (its origin's wall-clock and
 * monotonic readings are taken apart: 12 processes started in a row here read
 * -21 to +7 µs from one another). It is also the kernel's tracing clock
 * "mono", so a sched trace lines up with the stamps (_sched-trace.ts). The
 * 2^50 keeps a stamp at 8 varint bytes, as a wall-clock µs was, so every
 * layer's messages keep their size.
 */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n) + CLOCK_BASE_US;
}

/** What nowUs() adds to CLOCK_MONOTONIC's µs. */
export const CLOCK_BASE_US = 2 ** 50;

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
