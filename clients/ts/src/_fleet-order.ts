/**
 * Per-host seq order for watchFleet. JetStream delivers a stream in order,
 * except that it delivers again what was not acked: after an ack was lost
 * (NATS restarted between a delivery and its ack) the same message comes
 * twice, and a message delivered but lost on the way (the connection broke)
 * comes again only after the consumer's ack wait, behind newer ones. So per
 * publisher run (seqs start at 1 again when a taskwire restarts) this keeps
 * the next seq expected: an event after it waits (bounded) until the gap
 * fills; a gap that does not fill is reported as lost: the caller yields a
 * RETENTION loss marker for exactly its seqs, so received + lost = produced
 * holds for the consumer too.
 *
 * Hostile or buggy publishers (anyone allowed to publish on a host's
 * subject) are bounded here:
 * - A gap is given up when the run's head has not advanced for `waitMs`
 *   (`expire`, called by a timer, releases every such gap at once), or when
 *   `maxHeld` events / `maxHeldBytes` are held (the run holding the most
 *   bytes gives up its lowest gap: one host's backlog never releases
 *   another's). A forged far-ahead seq therefore invents no loss while the
 *   real events keep coming in order: they advance the head past nothing
 *   but themselves, and the forged event waits, bounded, like any other.
 * - An event below the head is dropped as a repeat, with one exception.
 *   Repeats are what JetStream delivers again (`fresh` false: a lost ack,
 *   an ack wait ended) and what a publisher republished after NATS lost its
 *   Nats-Msg-Id dedupe state (a crash): both cover seqs yielded already.
 *   The exception: a first delivery (`fresh`) inside one of the run's last
 *   16 gaps given up as lost is yielded (late, out of order; each seq once:
 *   they must come in order within the gap). Such a gap was forged (a seq
 *   far ahead, then the host went quiet) or re-stored after it was given
 *   up; dropping its events would silence the host until its real seqs pass
 *   the forged one. The cost: received + lost may exceed produced by those
 *   events, which only a publisher's own misbehaviour or a NATS crash past
 *   waitMs causes.
 * - Runs are kept LRU, at most `maxRuns` in all and `maxRunsPerLabel` per
 *   host; an evicted run gives up its gaps first. The "early" seqs (yielded
 *   ahead of the order, see below) are kept at most `maxEarly` per run and
 *   `maxEarlyTotal` in all, the hosts holding the most giving theirs up
 *   first (_fleet-early.ts). One given up, delivered again, is yielded again.
 *
 * The first event of a run this iteration sees as a first delivery sets
 * where it starts. A durable consumer restarted gets, before or after it,
 * messages its previous iteration fetched but never acked (JetStream
 * delivers them again once their ack wait ends): those come at once, out of
 * order, each once, and set no start (the seqs between them and the first
 * new message were acked before, not lost); those at or past the start
 * count as come there (a first delivery of one later is a repeat, no gap).
 *
 * The publisher sends each batch it takes as one message per CPU, together,
 * each naming the batch's seq range; the first message sent holds the
 * batch's first seq. A consumer that starts between two messages of a batch
 * (one from "now", or a durable one that acked part of the batch) never gets
 * the earlier ones, and their seqs interleave with the later ones': taken as
 * gaps, they would hold the host for waitMs and then be reported lost,
 * although they are only from before this iteration. So when a run's first
 * message is not its batch's first, the run starts after the batch, and the
 * rest of the batch comes as early seqs do: at once, each once, in order per
 * message but not across them. A batch range that does not contain its
 * message, or reaches maxEarly or more past it (forged), is ignored.
 *
 * A message the publisher sent again (its publish failed) names, as
 * `resent`, the last seq it had handed out by then: any seq after its own up
 * to there may be in the stream before it (acked, or stored although its ack
 * was lost), or may still come (the other messages sent again with it, in
 * seq order, right after it). Which, only the stream's order tells: so a run
 * first seen at such a message starts at its own first seq, in seq order,
 * and a gap up to `resent` is from before this iteration, not lost. It is
 * skipped without a loss once a newer message arrives (the stream holds
 * nothing more of those before it), or when it would be given up (waitMs,
 * held bytes); an event of it that comes after all (sent again once more,
 * and stored only then) is yielded late, once. When the outage took the
 * run's first messages, nothing is before them and every event comes in
 * order. Taking the whole range as before the start, as a batch range is
 * taken, would yield everything up to `resent` at once, out of order (seq 5
 * after 1: each message in turn, its CPU's seqs), to a consumer that has
 * the run from its first seq. A `resent` below its message's last seq, or
 * maxEarly or more past it, is ignored (the batch range is taken instead).
 */

import { EARLY_DEFAULTS, EarlySeqs } from "./_fleet-early.ts";
import { heapPop, heapPush } from "./_min-heap.ts";
import type { Arrival, FleetOrderOptions, Ordered, Ready } from "./_fleet-ordered.ts";

export type { Arrival, FleetOrderOptions, Ordered, Ready } from "./_fleet-ordered.ts";

/** A held event, or a seq range yielded already (as early, before the run's start was known): drained silently. */
type Held<T> = Ordered<T> & { readonly yielded?: boolean };

interface Run<T> {
  readonly label: string;
  /**
   * Where the run starts in this iteration (UNSET until its first first
   * delivery); `early` holds the first seqs yielded from before it (and their last).
   */
  start: number;
  readonly early: Map<number, number>;
  /** Up to this seq a gap may be from before the start (the run was first seen at a message sent again), else 0. */
  unsure: number;
  /** Gaps skipped as from before the start: events of them yielded late, each once, like early ones. */
  readonly skipped: { readonly first: number; readonly last: number }[];
  next: number;
  /** Waiting events by first seq, and a min-heap of their first seqs. */
  readonly held: Map<number, Held<T>>;
  /** When each held event arrived. */
  readonly at: Map<number, number>;
  readonly heap: number[];
  heldBytes: number;
  /** The last gaps given up, and the next seq of each that may still come late (first deliveries only, in order). */
  readonly lost: { readonly last: number; next: number }[];
  /** When the head last advanced, or the first event was held. */
  since: number;
}

/** The order keeper of one watchFleet iteration. */
export class FleetOrder<T> {
  readonly #runs = new Map<string, Run<T>>();
  readonly #perLabel = new Map<string, number>();
  readonly #o: Required<FleetOrderOptions>;
  readonly #early: EarlySeqs;
  #held = 0;
  #heldBytes = 0;

  constructor(o: FleetOrderOptions) {
    this.#o = { maxHeldBytes: 64 * 2 ** 20, maxRuns: 4096, maxRunsPerLabel: 16, ...EARLY_DEFAULTS, ...o };
    this.#early = new EarlySeqs(this.#o.maxEarly, this.#o.maxEarlyTotal);
  }

  /** Events held, waiting for a gap before them to fill. */
  get held(): number {
    return this.#held;
  }

  /** Bytes of the events held. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** Early seqs remembered (yielded ahead of their run's order), in all runs. */
  get early(): number {
    return this.#early.size;
  }

  /** Runs tracked. */
  get runs(): number {
    return this.#runs.size;
  }

  /**
   * Takes one event of `run`; returns what can be yielded now, in order
   * (possibly nothing; an evicted run's gaps may come first), or null for a
   * repeat.
   */
  push(run: string, e: Ordered<T>, arrival: Arrival | number = {}): Ready<T>[] | null {
    const a = typeof arrival === "number" ? { now: arrival } : arrival;
    const now = a.now ?? Date.now();
    const out: Ready<T>[] = [];
    const r = this.#run(run, a.label ?? "", now, out);
    if (r.start === UNSET && a.fresh !== false) this.#begin(r, e, a, { now, out });
    if (e.last < r.start || r.skipped.some((g) => g.first <= e.first && e.last <= g.last)) {
      if (r.early.has(e.first)) return out.length > 0 ? out : null;
      return (this.#early.add(r, e.first, e.last), out.push({ item: e.item }), out);
    }
    if (a.fresh !== false && e.first > r.unsure && r.next <= r.unsure) this.#passUnsure(r, out, now);
    if (e.first < r.next) {
      // A redelivery repeats what came before; a first delivery is data the stream stored again (a repeat: the
      // publisher republished after NATS lost its dedupe state) unless it falls in a gap given up as lost.
      const g = a.fresh === false ? undefined : r.lost.find((g) => e.first >= g.next && e.last <= g.last);
      if (g === undefined) return out.length > 0 ? out : null;
      g.next = e.last + 1;
      out.push({ item: e.item });
      return out;
    }
    if (r.held.has(e.first)) return out.length > 0 ? out : null;
    if (e.first === r.next) {
      out.push({ item: e.item });
      r.next = e.last + 1;
      r.since = now;
      this.#drain(r, out);
    } else this.#hold(r, e, now);
    if (r.held.size > 0 && now - r.since > this.#o.waitMs) this.#giveUp(r, out, now);
    this.#pressure(out, now);
    return out;
  }

  /** The item `run` holds for an event starting at `first` (pushed, and not given out yet), if any. */
  heldItem(run: string, first: number): T | undefined {
    const e = this.#runs.get(run)?.held.get(first);
    return e?.yielded === true ? undefined : e?.item;
  }

  /**
   * Gives up every gap whose run's head has not advanced for waitMs, and
   * those after it whose following event itself waited that long: k gaps
   * cost one wait, not k.
   */
  expire(now = Date.now()): Ready<T>[] {
    const out: Ready<T>[] = [];
    for (const r of this.#runs.values()) {
      while (r.held.size > 0 && now - r.since > this.#o.waitMs) {
        this.#giveUp(r, out, now);
        const low = this.#lowest(r);
        if (low !== undefined) r.since = r.at.get(low) ?? now;
      }
    }
    return out;
  }

  // Where a run first seen at `e` starts: `e` itself (up to `resent` unsure), or after its batch when the batch's
  // first message came before. Seqs yielded as early (redeliveries before this first first delivery) that are at or
  // past the start come in seq order as if just arrived, silently: a first delivery of one of them later is a
  // repeat, and no gap reports them lost.
  #begin(r: Run<T>, e: Ordered<T>, a: Arrival, at: { now: number; out: Ready<T>[] }): void {
    const resent = a.resent;
    if (resent !== undefined && e.last <= resent && resent - e.first < this.#o.maxEarly) {
      r.start = r.next = e.first;
      r.unsure = resent;
    } else r.start = r.next = this.#startOf(e, a.batch);
    for (const [first, last] of r.early) {
      if (first < r.start) continue;
      this.#early.delete(r, first);
      this.#hold(r, { first, last, item: undefined as T, yielded: true }, at.now);
    }
    this.#drain(r, at.out);
  }

  #startOf(e: Ordered<T>, batch: Arrival["batch"]): number {
    if (batch === undefined) return e.first;
    const [first, last] = batch;
    const inside = first < e.first && e.last <= last && last - e.first < this.#o.maxEarly;
    return inside && Number.isSafeInteger(last + 1) ? last + 1 : e.first;
  }

  #run(key: string, label: string, now: number, out: Ready<T>[]): Run<T> {
    let r = this.#runs.get(key);
    if (r !== undefined) {
      this.#runs.delete(key); // LRU: most recent last
      this.#runs.set(key, r);
      return r;
    }
    // Its first first delivery sets where it starts (push; a consumer may start mid-stream).
    r = {
      label,
      start: UNSET,
      early: new Map(),
      unsure: 0,
      skipped: [],
      next: UNSET,
      held: new Map(),
      at: new Map(),
      heap: [],
      heldBytes: 0,
      lost: [],
      since: now,
    };
    this.#runs.set(key, r);
    const n = (this.#perLabel.get(label) ?? 0) + 1;
    this.#perLabel.set(label, n);
    if (n > this.#o.maxRunsPerLabel) this.#evict(out, now, label);
    if (this.#runs.size > this.#o.maxRuns) this.#evict(out, now);
    return r;
  }

  // Drops the least recently used run (of `label`), giving up its gaps first.
  #evict(out: Ready<T>[], now: number, label?: string): void {
    for (const [key, r] of this.#runs) {
      if (label !== undefined && r.label !== label) continue;
      while (r.held.size > 0) this.#giveUp(r, out, now);
      this.#early.drop(r);
      this.#runs.delete(key);
      const n = (this.#perLabel.get(r.label) ?? 1) - 1;
      if (n === 0) this.#perLabel.delete(r.label);
      else this.#perLabel.set(r.label, n);
      return;
    }
  }

  #hold(r: Run<T>, e: Held<T>, now: number): void {
    if (r.held.size === 0) r.since = now;
    r.held.set(e.first, e);
    r.at.set(e.first, now);
    heapPush(r.heap, e.first);
    const bytes = e.bytes ?? 0;
    r.heldBytes += bytes;
    this.#heldBytes += bytes;
    this.#held++;
  }

  #take(r: Run<T>, e: Ordered<T>): void {
    r.held.delete(e.first);
    r.at.delete(e.first);
    const bytes = e.bytes ?? 0;
    r.heldBytes -= bytes;
    this.#heldBytes -= bytes;
    this.#held--;
  }

  #drain(r: Run<T>, out: Ready<T>[]): void {
    for (let e = r.held.get(r.next); e !== undefined; e = r.held.get(r.next)) {
      this.#take(r, e);
      if (e.yielded !== true) out.push({ item: e.item });
      r.next = e.last + 1;
    }
    // Held events a loss marker reached over (overlapping seqs: a buggy or hostile publisher) come after it.
    while (r.heap.length > 0 && (r.heap[0] as number) < r.next) {
      const first = heapPop(r.heap);
      const e = r.held.get(first);
      if (e !== undefined) (this.#take(r, e), e.yielded !== true && out.push({ item: e.item }));
    }
  }

  // Too much held: the run holding the most bytes (then events) gives up its lowest gap.
  #pressure(out: Ready<T>[], now: number): void {
    while (this.#held > this.#o.maxHeld || this.#heldBytes > this.#o.maxHeldBytes) {
      let worst: Run<T> | undefined;
      for (const r of this.#runs.values()) {
        if (r.held.size === 0) continue;
        if (
          worst === undefined || r.heldBytes > worst.heldBytes ||
          (r.heldBytes === worst.heldBytes && r.held.size > worst.held.size)
        ) worst = r;
      }
      if (worst === undefined) return;
      this.#giveUp(worst, out, now);
    }
  }

  #lowest(r: Run<T>): number | undefined {
    while (r.heap.length > 0 && !r.held.has(r.heap[0] as number)) heapPop(r.heap);
    return r.heap[0];
  }

  // The lowest gap of `r` is given up: reported lost (past `unsure`), and what follows it yielded.
  #giveUp(r: Run<T>, out: Ready<T>[], now: number): void {
    const first = this.#lowest(r);
    if (first === undefined) return;
    if (first > r.next) this.#gap(r, r.next, first - 1, out);
    r.next = first;
    r.since = now;
    this.#drain(r, out);
  }

  // A newer message than those sent again came: every event up to `unsure` the stream holds came before it, so the
  // gaps left there are from before the start. Skipped, not lost.
  #passUnsure(r: Run<T>, out: Ready<T>[], now: number): void {
    while (r.next <= r.unsure) {
      const low = this.#lowest(r);
      const to = low === undefined || low > r.unsure ? r.unsure + 1 : low;
      if (to > r.next) this.#gap(r, r.next, to - 1, out);
      r.next = to;
      this.#drain(r, out);
    }
    r.since = now;
  }

  // Seqs first..last will not come in order: those up to `unsure` are skipped (from before the start), the rest
  // reported lost. Events of either that come late after all are yielded (see push).
  #gap(r: Run<T>, first: number, last: number, out: Ready<T>[]): void {
    const unsure = Math.min(last, r.unsure);
    if (first <= unsure && r.skipped.push({ first, last: unsure }) > MAX_LOST_GAPS) r.skipped.shift();
    const from = Math.max(first, unsure + 1);
    if (from > last) return;
    out.push({ gap: [from, last], label: r.label });
    if (r.lost.push({ next: from, last }) > MAX_LOST_GAPS) r.lost.shift();
  }
}

/** A run's start before its first first delivery: every seq is below it, so redeliveries come as early seqs. */
const UNSET = Number.POSITIVE_INFINITY;

/** Gaps given up (and skipped) remembered per run (for events of them that come late). */
const MAX_LOST_GAPS = 16;
