/**
 * The registry's timers: lease reaping (a quarter of the lease apart, so a
 * listener outlives its stream by at most 1.25 leases), and once a second
 * the events/s sample each listener reports, the charge for the slabs
 * its items keep alive (_slab-ledger.ts), and the sweep that ends streams
 * whose clients read nothing while the budget is past its limit. Kept apart from the registry so that the
 * registry itself is plain state that tests drive with a fake clock.
 */
import type { ListenerRegistry } from "./registry.ts";

/** Running timers; `stop()` clears them. */
export interface Housekeeping {
  stop(): void;
}

/**
 * Starts the timers (they do not keep the process alive). `onError` is told
 * of a timer's task that threw (a bug): the task runs again on the next tick,
 * and the process goes on.
 */
export function startHousekeeping(
  registry: Pick<ListenerRegistry, "reap" | "sampleRates" | "settleSlabs" | "endStalled" | "limits">,
  onError: (what: string, err: unknown) => void = () => {},
): Housekeeping {
  const guarded = (what: string, task: () => void) => () => {
    try {
      task();
    } catch (err) {
      onError(what, err);
    }
  };
  const reaper = setInterval(
    guarded("reaping listeners", () => registry.reap()),
    Math.max(50, Math.floor(registry.limits.leaseMs / 4)),
  );
  const sample = guarded("sampling rates and charging slabs", () => {
    registry.sampleRates();
    registry.settleSlabs();
  });
  const endStalled = guarded("ending stalled streams", () => registry.endStalled());
  const sampler = setInterval(() => (sample(), endStalled()), 1000);
  for (const t of [reaper, sampler]) (t as { unref?: () => void }).unref?.();
  return {
    stop: () => {
      clearInterval(reaper);
      clearInterval(sampler);
    },
  };
}
