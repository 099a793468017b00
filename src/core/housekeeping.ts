/**
 * The registry's timers: lease reaping (a quarter of the lease apart, so a
 * listener outlives its stream by at most 1.25 leases), and once a second
 * the events/s sample each listener reports and the charge for the slabs
 * its items keep alive (_slab-ledger.ts). Kept apart from the registry so that the
 * registry itself is plain state that tests drive with a fake clock.
 */
import type { ListenerRegistry } from "./registry.ts";

/** Running timers; `stop()` clears them. */
export interface Housekeeping {
  stop(): void;
}

/** Starts the timers (they do not keep the process alive). */
export function startHousekeeping(
  registry: Pick<ListenerRegistry, "reap" | "sampleRates" | "settleSlabs" | "limits">,
): Housekeeping {
  const reaper = setInterval(() => registry.reap(), Math.max(50, Math.floor(registry.limits.leaseMs / 4)));
  const sampler = setInterval(() => {
    registry.sampleRates();
    registry.settleSlabs();
  }, 1000);
  for (const t of [reaper, sampler]) (t as { unref?: () => void }).unref?.();
  return {
    stop: () => {
      clearInterval(reaper);
      clearInterval(sampler);
    },
  };
}
