/**
 * What FleetOrder (_fleet-order.ts) takes and gives: events with the seqs
 * they cover, how each arrived, what to yield, and its limits. Types only.
 */

/** One event with the seqs it covers (an exit: one; a loss marker: its range), and its size while held. */
export interface Ordered<T> {
  readonly first: number;
  readonly last: number;
  readonly item: T;
  /** Bytes it costs while held (default 0). */
  readonly bytes?: number;
}

/** What to yield now: events in order, and gaps given up on (first..last lost) of the run labelled `label`. */
export type Ready<T> = { readonly item: T } | {
  readonly gap: readonly [first: number, last: number];
  readonly label: string;
};

/** Limits of a FleetOrder. */
export interface FleetOrderOptions {
  readonly waitMs: number;
  readonly maxHeld: number;
  readonly maxHeldBytes?: number;
  readonly maxRuns?: number;
  readonly maxRunsPerLabel?: number;
  readonly maxEarly?: number;
  readonly maxEarlyTotal?: number;
}

/**
 * How an event arrived: when, whether JetStream delivered it for the first
 * time, its run's label (the host), and the seq range of the publisher's
 * batch its message belongs to (its first and last seq).
 */
export interface Arrival {
  readonly now?: number;
  readonly fresh?: boolean;
  readonly label?: string;
  readonly batch?: readonly [first: number, last: number] | undefined;
  /** Sent again: the last seq its publisher had handed out by then. */
  readonly resent?: number | undefined;
}
