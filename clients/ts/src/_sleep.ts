/**
 * Waits `ms`, ending early when `signal` aborts, also when it is aborted
 * already (a callback may abort it just before the wait). It never rejects:
 * the caller looks at `signal.aborted` afterwards and decides what an abort
 * means (watchExits ends quietly; a retried call throws CANCELED).
 */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
