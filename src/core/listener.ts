/**
 * A listener: what the kernel keys by netlink port id, taskwire keys by an
 * unguessable id. It numbers its events 1, 2, 3, ... over everything
 * produced for it, queues them boundedly, and wakes the one stream attached
 * to it. Counters keep the invariant checkable: delivered + lost = produced,
 * until a stream resumes (after_seq) past what the retention still holds:
 * exits handed to the stream that went away, which its client never read,
 * are then counted lost (retention) as well as delivered.
 * Generic over the record (R) and over what is retained of it (P).
 *
 * Everything it holds is charged to its memory budget account: its queue,
 * its retention, the batch its stream has in flight (taken, not yet
 * written: charged until the stream takes the next one or ends, or its
 * transport took it with nothing left to take: sent()), and the
 * registry's fixed cost for it. An exit that does not fit is dropped as from
 * a full queue, after the listener's own retention has given up what it can.
 */
import { type BudgetAccount, type BudgetPool, unbudgeted } from "./budget.ts";
import {
  type CpuRecord,
  createEventQueue,
  type EventQueue,
  type LossKind,
  QUEUED_EXIT_BYTES,
  type QueueItem,
} from "./event-queue.ts";
import { type ListenerOptions, type LossCounters, noLosses, type StreamEnd } from "./listener-options.ts";
import { HeldBatches } from "./_held-batches.ts";
import { ListenerStreams } from "./_listener-streams.ts";
import { checkResume, Replays } from "./_replay.ts";
import { RecordGaps, SlabCharge, SPARSE_GAP } from "./_listener-slabs.ts";
import type { SlabCount, SlabHolding } from "./_slab-ledger.ts";
import { lastSeqOf, Retention, type StreamItem } from "./retention.ts";

/** A listener's state, owned by the registry. */
export class Listener<R extends CpuRecord = CpuRecord, P = unknown> implements SlabHolding {
  readonly id: string;
  readonly ephemeral: boolean;
  readonly owner: string;
  readonly queue: EventQueue<R>;
  readonly lost: LossCounters = noLosses();
  /** Seq of the last event produced for this listener. */
  produced = 0;
  /** Exits handed to a stream. */
  delivered = 0;
  /** The last seq handed to a stream. */
  handedOut = 0;
  /** Events produced per second, an exponentially weighted average over samples. */
  rate = 0;
  /** Which records this listener wants (set by the stream that subscribes); others take no seq. */
  filter: ((record: R) => boolean) | undefined;
  /** Which records its owner may see at all (fixed at creation); others take no seq. */
  readonly scope: ((record: R) => boolean) | undefined;
  /** When the last stream went away (or the listener was made), for lease reaping. */
  detachedAt: number;
  readonly #retention: Retention<R, P>;
  readonly #account: BudgetAccount;
  /** Its account's pool (a stale one after the account closes is harmless: nothing is delivered then). */
  readonly #pool: BudgetPool;
  readonly #sizeOf: ((record: R) => number) | undefined;
  /** A copy of a record sharing no slab, queued for a record held apart (SPARSE_GAP); absent: none is made. */
  readonly #unshare: ((record: R) => R) | undefined;
  /** How far apart the records it queued are. */
  readonly #gaps = new RecordGaps();
  /** What it is charged for the slabs its items keep alive. */
  readonly #slabCharge: SlabCharge<R>;
  /** What its streams hold: the batch in flight, taken-over streams' batches, replay batches. */
  readonly #held: HeldBatches<R>;
  /** Removed from the registry: it retains nothing more, and gives everything back once no stream drains it. */
  #retired = false;
  /** Its streams: the attached one, the one draining it once removed, taken-over ones. */
  readonly #streams: ListenerStreams<R>;
  /**
   * Where losses counted after its removal go (the registry's totals took its
   * counters at removal): a stream draining it can still replay seqs it no
   * longer retains, as RETENTION loss.
   */
  #lateLoss: ((reason: keyof LossCounters, count: number) => void) | undefined;
  /** Its streams' resumes, and the seqs they counted as RETENTION loss. */
  readonly #replays: Replays<R, P>;
  #sampledProduced = 0;
  #sampledAt: number;

  constructor(o: ListenerOptions<R, P>) {
    this.id = o.id;
    this.ephemeral = o.ephemeral;
    this.owner = o.owner;
    this.scope = o.scope;
    this.#account = o.account ?? unbudgeted(o.owner);
    this.#pool = this.#account.pool;
    this.#sizeOf = o.sizeOf;
    this.#held = new HeldBatches<R>(this.#account, (o.sizeOfPayload ?? (() => 0)) as (payload: unknown) => number);
    this.#streams = new ListenerStreams<R>(this.#held);
    this.#unshare = o.unshare;
    this.#retention = new Retention<R, P>(o.capacity, o.retain, {
      account: this.#account,
      sizeOfPayload: o.sizeOfPayload ?? (() => 0),
      payloadBuffer: o.payloadBuffer,
    });
    // Live events come before history: an exit that does not fit first makes the retention give up its oldest.
    this.queue = createEventQueue<R>(o.capacity, o.policy, {
      account: this.#account,
      reclaim: (bytes) => this.#retention.shed(bytes),
      dropped: (exits) => {
        this.#countDrops();
        // Taken from a removed listener still draining: the registry counted its losses when it was removed.
        if (this.#retired) this.#lateLoss?.("memory-budget", exits);
      },
    });
    this.detachedAt = o.now;
    this.#sampledAt = o.now;
    this.#slabCharge = new SlabCharge<R>(this.#account, o.slabs);
    this.#replays = new Replays<R, P>({
      retention: this.#retention,
      held: this.#held,
      account: this.#account,
      lost: this.lost,
    });
  }

  /** Updates `rate` from what was produced since the last sample. */
  sampleRate(now: number): void {
    const dt = (now - this.#sampledAt) / 1000;
    if (dt <= 0) return;
    const current = (this.produced - this.#sampledProduced) / dt;
    this.rate = this.rate === 0 ? current : 0.5 * this.rate + 0.5 * current;
    this.#sampledProduced = this.produced;
    this.#sampledAt = now;
  }

  /** A stream is attached. */
  get attached(): boolean {
    return this.#streams.attached;
  }

  /** Bytes it holds against the memory budget now. */
  get memoryBytes(): number {
    return this.#account.bytes;
  }

  /** Its budget account (the registry charges its fixed cost here). */
  get account(): BudgetAccount {
    return this.#account;
  }

  /**
   * An exit on one of this listener's CPUs; `bytes` is what its record costs
   * (see ListenerOptions.sizeOf), `ordinal` the registry's count of records
   * (for SPARSE_GAP).
   */
  deliver(record: R, bytes?: number, ordinal?: number): void {
    if (this.scope !== undefined && !this.scope(record)) return;
    if (this.filter !== undefined && !this.filter(record)) return;
    const cost = bytes ?? (this.#sizeOf === undefined ? 0 : this.#sizeOf(record));
    if (this.#unshare === undefined || ordinal === undefined) {
      const dropped = this.queue.push(++this.produced, record, cost);
      if (dropped !== 0) this.#countDrops();
    } else this.#deliverTracked(record, cost, ordinal, this.#unshare);
    this.#streams.wake();
  }

  // deliver(), tracking how far apart the records it queues are (SPARSE_GAP).
  #deliverTracked(record: R, bytes: number, ordinal: number, unshare: (record: R) => R): void {
    const gap = this.#gaps.at(ordinal);
    // The copy is made before the record takes a seq: a copy that fails (an allocation) then costs no seq.
    const queued = gap > SPARSE_GAP && this.#mayQueue(bytes) ? unshare(record) : record;
    const dropped = this.queue.push(++this.produced, queued, bytes);
    if (dropped !== 0) this.#countDrops();
    if (this.queue.lastQueued === this.produced) this.#gaps.queued(ordinal, gap);
  }

  // The queue's drops, as its two counters have them (a full queue's, a full budget's).
  #countDrops(): void {
    this.lost["subscriber-overflow"] = this.queue.drops;
    this.lost["memory-budget"] = this.queue.budgetDrops;
  }

  // Whether an exit costing `bytes` would be queued (an unshared copy is made only for one that is).
  #mayQueue(bytes: number): boolean {
    return this.queue.policy === "drop-oldest" ||
      (this.queue.depth < this.queue.capacity && this.#pool.fits(bytes + QUEUED_EXIT_BYTES));
  }

  /**
   * deliver() threw (a server bug) for a record of `cpu`, with `producedBefore`
   * its count of events before that call: makes the listener's account exact
   * again. A record that took no seq is a SOURCE_ERROR loss; one that took a
   * seq its queue does not end with (the throw came inside the queue) gets a
   * SOURCE_ERROR marker for that seq; drops the queue made before the throw
   * are counted. Returns whether the record was counted lost.
   */
  recover(producedBefore: number, cpu: number): boolean {
    this.#countDrops();
    let lost = true;
    if (this.produced === producedBefore) this.#lose(1, "source-error", cpu);
    else if (this.queue.endsAt(this.produced)) lost = false;
    else {
      this.lost["source-error"]++;
      this.queue.pushLoss(this.produced, this.produced, "source-error", cpu);
    }
    try {
      this.#streams.wake();
    } catch {
      // The wake-up may be what threw in deliver(): the stream then finds the marker on its next wake-up.
    }
    return lost;
  }

  /** `count` events produced for this listener that it will never get. */
  lose(count: number, reason: LossKind, cpu = -1): void {
    if (count <= 0) return;
    this.#lose(count, reason, cpu);
    this.#streams.wake();
  }

  #lose(count: number, reason: LossKind, cpu: number): void {
    const first = this.produced + 1;
    this.produced += count;
    this.lost[reason] += count;
    this.queue.pushLoss(first, this.produced, reason, cpu);
  }

  /**
   * Takes up to `max` queued items for the attached stream. The stream takes
   * again only once it has written the last batch, so that batch's charge is
   * given back now and this one's is kept until then.
   */
  take(max: number): QueueItem<R>[] {
    this.#held.written();
    // The queue's charges for these items carry over to the batch in flight.
    const items = this.queue.take(max, true);
    this.#held.took(items, this.queue.heldBytes);
    for (const item of items) {
      if (item.kind === "exit") this.delivered++;
      this.handedOut = lastSeqOf(item);
      if (!this.#retired) this.#retention.push(item);
    }
    return items;
  }

  /**
   * The stream told it ends by `end`, still attached, has nothing queued to
   * take and its transport has taken the batch it sent last: that batch is
   * no longer held. Only a take let it go before, so a stream whose listener
   * went quiet after its client had read everything kept its last batch
   * charged, and a stall sweep took it for a stream whose client reads
   * nothing.
   */
  sent(end: (why: string, code: StreamEnd) => void): void {
    this.#streams.sent(end);
  }

  /** The attached stream encoded the batch it took into `bytes` (HeldBatches.encoded). */
  encoded(bytes: number): void {
    this.#held.encoded(bytes);
  }

  /**
   * The registry removed it. `draining`: its stream still sends what was
   * queued (the queue and in-flight batch stay charged until that stream
   * ends); otherwise the queue is dropped now, and everything is given back
   * once no taken-over stream still holds a batch (at once, as a rule).
   * `lateLoss` is told what it counts as lost from now on.
   */
  retire(draining: boolean, lateLoss?: (reason: keyof LossCounters, count: number) => void): void {
    this.#retired = true;
    this.#lateLoss = lateLoss;
    this.#retention.clear();
    if (!draining) {
      this.#streams.stopDraining();
      // Nobody sends the queue now, and a taken-over stream still holding this listener would keep it alive
      // uncharged. (Without one, the queue stays: the fleet publisher's pump sends what is queued at shutdown.)
      if (this.#held.orphans > 0) this.queue.take(this.queue.length);
    }
    this.#closeOnceLetGo();
  }

  // A removed listener gives everything back once neither its draining stream nor a taken-over one holds anything.
  #closeOnceLetGo(): void {
    if (this.#streams.letGo) this.#close();
  }

  // Gives everything back.
  #close(): void {
    this.#slabCharge.clear();
    this.#held.clear();
    this.#account.close();
  }

  /** Tells `count` of the shared slabs its items keep alive: queued, in flight (its streams'), retained. */
  countSlabs(count: SlabCount): void {
    this.#slabCharge.count(count, { queue: this.queue, retention: this.#retention, held: this.#held });
  }

  /** What it is charged for the shared slabs its items keep alive (the ledger's last count). */
  get slabBytes(): number {
    return this.#slabCharge.bytes;
  }

  /** Removed, and nothing it held is reachable any more: it charges nothing. */
  get closed(): boolean {
    return this.#account.closed;
  }

  /** Charges it `bytes` in all for the slabs its items keep alive (the ledger's count), even past the budget. */
  chargeSlabs(bytes: number): void {
    this.#slabCharge.charge(bytes);
  }

  /** Throws SeqOutOfRangeError unless a stream could resume after `seq` (validation only: changes nothing). */
  checkResume(seq: bigint): void {
    checkResume(seq, this.handedOut);
  }

  /**
   * What a client that has everything up to `seq` missed of what was handed
   * out, a batch at a time (_replay.ts): the retained items after it, with a
   * RETENTION loss for any seqs no longer retained. Validated now
   * (SeqOutOfRangeError); each call of the returned function gives the next
   * at most `max` items, none once the replay has reached what was handed
   * out when it began.
   */
  replayFrom(seq: number): (max: number) => StreamItem<R, P>[] {
    this.checkResume(BigInt(seq));
    return this.#replays.from(seq, this.handedOut, {
      stream: () => this.#streams.current,
      lateLoss: (count) => this.#lateLoss?.("retention", count),
    });
  }

  /** Attaches a stream; an attached one is ended first (takeover), and its batch in flight stays charged until it detaches. */
  attach(wake: () => void, end: (why: string, code: StreamEnd) => void): void {
    this.#streams.attach(wake, end);
  }

  /**
   * Detaches the stream whose `end` this is. A taken-over stream gives back
   * the batch it held; any other stale detach is ignored. A removed listener
   * gives everything back once its draining stream and every taken-over one
   * are gone.
   */
  detach(end: (why: string, code: StreamEnd) => void, now: number): void {
    if (this.#streams.detach(end, this.#retired)) this.detachedAt = now;
    else if (this.#retired) this.#closeOnceLetGo();
  }

  /**
   * A stall sweep (HeldBatches.stalled): notes when each batch its streams
   * hold was first seen, and with `why`, tells each stream that has held one
   * for `ms` by the sweeps' clock that it ends ("stalled", with `why`): its
   * client reads nothing, so only its transport can end it. Each is told
   * once. Returns how many were told.
   */
  endStalled(now: number, ms: number, why: string | undefined): number {
    return this.#streams.endStalled(now, ms, why);
  }

  /** Ends the attached stream: normally once its queue is sent ("removed"), or at once as the server shuts down. */
  close(why: string, how: StreamEnd = "removed"): void {
    this.#streams.close(why, how);
  }
}
