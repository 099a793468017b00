/**
 * The server's limits on listeners and streams, their defaults and the
 * ranges the ones with bounds are held to. The registry applies them; the
 * CLI and SubscribeExits read the defaults and ranges to check input.
 */

/** Server-side limits and defaults. */
export interface Limits {
  /** Most listeners at once (RESOURCE_EXHAUSTED past it). */
  maxListeners: number;
  /** Most listeners one principal owns at once. */
  maxListenersPerPrincipal: number;
  /** Queue size when a client asks for 0. */
  defaultBuffer: number;
  /** Cap on a client's requested queue size. */
  maxBuffer: number;
  /** How long a listener outlives its stream, ms. */
  leaseMs: number;
  /** Most events in one stream message. */
  maxBatch: number;
  /** Idle stream heartbeat, ms. */
  heartbeatMs: number;
}

/** Defaults chosen for a monitoring service: deep queues, short leases. */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxListeners: 4096,
  maxListenersPerPrincipal: 256,
  defaultBuffer: 8192,
  maxBuffer: 1 << 20,
  leaseMs: 30_000,
  maxBatch: 256,
  heartbeatMs: 15_000,
});

/**
 * Upper bounds of the limits that have one: a lease past a timer's longest
 * wait (2^31 - 1 ms, 24.8 days) would fire at once, and past uint32 could not
 * be told to clients; a heartbeat stays in what SubscribeExits accepts.
 */
export const LIMIT_RANGES: Readonly<Partial<Record<keyof Limits, readonly [min: number, max: number]>>> = Object
  .freeze({
    leaseMs: [1, 2 ** 31 - 1],
    heartbeatMs: [100, 600_000],
  });

/** `partial` over DEFAULT_LIMITS, checked. */
export function resolveLimits(partial: Partial<Limits> = {}): Limits {
  const limits = { ...DEFAULT_LIMITS, ...partial };
  // A lowered maxBuffer pulls the default down with it unless a default was given.
  if (partial.defaultBuffer === undefined) limits.defaultBuffer = Math.min(limits.defaultBuffer, limits.maxBuffer);
  for (const [k, v] of Object.entries(limits)) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`limit ${k} must be a positive integer, got ${v}`);
    const [min, max] = LIMIT_RANGES[k as keyof Limits] ?? [1, Infinity];
    if (v < min || v > max) throw new RangeError(`limit ${k} must be from ${min} to ${max}, got ${v}`);
  }
  if (limits.defaultBuffer > limits.maxBuffer) {
    throw new RangeError(`defaultBuffer ${limits.defaultBuffer} exceeds maxBuffer ${limits.maxBuffer}`);
  }
  return limits;
}
