/**
 * Per-host seq order for watchFleet. JetStream delivers a stream in order,
 * except that it delivers again what was not acked: after an ack was lost
 * (NATS restarted between a delivery and its ack) the same message comes
 * twice, and a message delivered but lost on the way (the connection broke)
 * comes again only after the consumer's ack wait, behind newer ones. So per
 * publisher run (seqs start at 1 again when a taskwire restarts) this keeps
 * the next seq expected: an event before it was yielded already and is
 * dropped; one after it waits (bounded) until the gap fills. A gap that does
 * not fill within `waitMs` (the stream's limits discarded those messages
 * before this consumer read them) or past `maxHeld` waiting events is
 * reported as lost: the caller yields a RETENTION loss marker for exactly
 * its seqs, so received + lost = produced holds for the consumer too.
 *
 * The first event of a run this iteration sees sets where it starts. A
 * durable consumer restarted may then get, after it, messages its previous
 * iteration fetched but never acked (JetStream delivers them again once
 * their ack wait ends): those come at once, out of order, each once.
 */

/** One event with the seqs it covers (an exit: one; a loss marker: its range). */
export interface Ordered<T> {
  readonly first: number;
  readonly last: number;
  readonly item: T;
}

/** What to yield now: events in order, and gaps given up on (first..last lost). */
export type Ready<T> = { readonly item: T } | { readonly gap: readonly [first: number, last: number] };

interface Run<T> {
  /** The first seq this iteration saw of the run; `early` holds the first seqs yielded from before it. */
  readonly start: number;
  readonly early: Set<number>;
  next: number;
  /** Waiting events by first seq. */
  held: Map<number, Ordered<T>>;
  /** When the oldest gap began to be waited on. */
  since: number;
}

/** The order keeper of one watchFleet iteration. */
export class FleetOrder<T> {
  readonly #runs = new Map<string, Run<T>>();
  readonly #waitMs: number;
  readonly #maxHeld: number;
  #held = 0;

  constructor(o: { readonly waitMs: number; readonly maxHeld: number }) {
    this.#waitMs = o.waitMs;
    this.#maxHeld = o.maxHeld;
  }

  /** Events held, waiting for a gap before them to fill. */
  get held(): number {
    return this.#held;
  }

  /** Takes one event of `run`; returns what can be yielded now, in order (possibly nothing), or null for an event delivered again. */
  push(run: string, e: Ordered<T>, now = Date.now()): Ready<T>[] | null {
    let r = this.#runs.get(run);
    // The first event of a run sets where it starts (a consumer may start mid-stream).
    if (r === undefined) {
      this.#runs.set(run, r = { start: e.first, early: new Set(), next: e.first, held: new Map(), since: now });
    }
    if (e.last < r.start) return r.early.has(e.first) ? null : (r.early.add(e.first), [{ item: e.item }]);
    if (e.last < r.next || r.held.has(e.first)) return null;
    const out: Ready<T>[] = [];
    if (e.first === r.next) {
      out.push({ item: e.item });
      r.next = e.last + 1;
      this.#drain(r, out);
    } else {
      if (r.held.size === 0) r.since = now;
      r.held.set(e.first, e);
      this.#held++;
    }
    this.#giveUp(r, out, now);
    return out;
  }

  #drain(r: Run<T>, out: Ready<T>[]): void {
    for (let e = r.held.get(r.next); e !== undefined; e = r.held.get(r.next)) {
      r.held.delete(e.first);
      this.#held--;
      out.push({ item: e.item });
      r.next = e.last + 1;
    }
  }

  // A gap waited on too long, or too much held: its seqs are lost.
  #giveUp(r: Run<T>, out: Ready<T>[], now: number): void {
    while (r.held.size > 0 && (now - r.since > this.#waitMs || this.#held > this.#maxHeld)) {
      const first = Math.min(...r.held.keys());
      out.push({ gap: [r.next, first - 1] });
      r.next = first;
      r.since = now;
      this.#drain(r, out);
    }
  }
}
