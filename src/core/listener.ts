/**
 * A listener: what the kernel keys by netlink port id, taskwire keys by an
 * unguessable id. It numbers its events 1, 2, 3, ... over everything
 * produced for it, queues them boundedly, and wakes the one stream attached
 * to it. Counters keep the invariant checkable: delivered + lost = produced.
 * Generic over the record (R) and over what is retained of it (P).
 */
import {
  type CpuRecord,
  createEventQueue,
  type EventQueue,
  type LossKind,
  type OverflowPolicy,
  type QueueItem,
} from "./event-queue.ts";
import { SeqOutOfRangeError } from "./errors.ts";
import { firstSeqOf, lastSeqOf, Retention, type StreamItem } from "./retention.ts";

/** How a stream ends: after its queue when the listener is removed; at once on takeover or shutdown. */
export type StreamEnd = "removed" | "takeover" | "shutdown";

/** Loss counters by reason. */
export type LossCounters = Record<LossKind, number>;

/** Options for a new listener. */
export interface ListenerOptions<R extends CpuRecord, P> {
  readonly id: string;
  readonly capacity: number;
  readonly policy: OverflowPolicy;
  /** Dies with its stream (inline cpumask subscription). */
  readonly ephemeral: boolean;
  /** The principal that made it (Principal.id). */
  readonly owner: string;
  /** Records its owner may see at all (applied before `filter`, for good); undefined for every record. */
  readonly scope?: ((record: R) => boolean) | undefined;
  readonly now: number;
  /** What to keep of a record handed to a stream, for resumes. */
  readonly retain: (record: R) => P;
}

/** Every loss reason at zero. */
export function noLosses(): LossCounters {
  return { "subscriber-overflow": 0, "kernel-overflow": 0, retention: 0, restart: 0 };
}

/** A listener's state, owned by the registry. */
export class Listener<R extends CpuRecord = CpuRecord, P = unknown> {
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
  /** Seq ranges already counted as RETENTION loss, sorted and disjoint: a second resume over a gap is not new loss. */
  #retentionCounted: [first: number, last: number][] = [];
  #sampledProduced = 0;
  #sampledAt: number;
  /** The attached stream's wake-up, if any. */
  #wake: (() => void) | undefined;
  /** Ends the attached stream (takeover, removal). */
  #end: ((why: string, code: StreamEnd) => void) | undefined;

  constructor(o: ListenerOptions<R, P>) {
    this.id = o.id;
    this.ephemeral = o.ephemeral;
    this.owner = o.owner;
    this.scope = o.scope;
    this.queue = createEventQueue<R>(o.capacity, o.policy);
    this.#retention = new Retention<R, P>(o.capacity, o.retain);
    this.detachedAt = o.now;
    this.#sampledAt = o.now;
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
    return this.#end !== undefined;
  }

  /** An exit on one of this listener's CPUs. */
  deliver(record: R): void {
    if (this.scope !== undefined && !this.scope(record)) return;
    if (this.filter !== undefined && !this.filter(record)) return;
    const dropped = this.queue.push(++this.produced, record);
    if (dropped !== 0) this.lost["subscriber-overflow"]++;
    this.#wake?.();
  }

  /** `count` events produced for this listener that it will never get. */
  lose(count: number, reason: LossKind, cpu = -1): void {
    if (count <= 0) return;
    const first = this.produced + 1;
    this.produced += count;
    this.lost[reason] += count;
    this.queue.pushLoss(first, this.produced, reason, cpu);
    this.#wake?.();
  }

  /** Takes up to `max` queued items for the attached stream. */
  take(max: number): QueueItem<R>[] {
    const items = this.queue.take(max);
    for (const item of items) {
      if (item.kind === "exit") this.delivered++;
      this.handedOut = lastSeqOf(item);
      this.#retention.push(item);
    }
    return items;
  }

  /** Throws SeqOutOfRangeError unless a stream could resume after `seq` (validation only: changes nothing). */
  checkResume(seq: bigint): void {
    if (seq < 0n || seq > BigInt(this.handedOut)) {
      throw new SeqOutOfRangeError(
        `after_seq ${seq} is beyond the last event this listener sent (${this.handedOut}); resume from a seq you received`,
      );
    }
  }

  /**
   * What a client that has everything up to `seq` missed of what was handed
   * out: the retained items after it, preceded by a RETENTION loss for any
   * seqs no longer retained. Call checkResume first.
   */
  resumeAfter(seq: number): StreamItem<R, P>[] {
    this.checkResume(BigInt(seq));
    const replay: StreamItem<R, P>[] = this.#retention.after(seq);
    const firstKept = replay.length > 0 ? firstSeqOf(replay[0]!) : this.handedOut + 1;
    if (firstKept > seq + 1) {
      this.lost.retention += this.#countRetention(seq + 1, firstKept - 1);
      replay.unshift({ kind: "lost", first: seq + 1, last: firstKept - 1, reason: "retention", cpu: -1 });
    }
    return replay;
  }

  // Adds first..last to the counted ranges; returns how many of its seqs were not counted before.
  #countRetention(first: number, last: number): number {
    let fresh = last - first + 1;
    const kept: [number, number][] = [];
    for (const [a, b] of this.#retentionCounted) {
      if (b < first - 1 || a > last + 1) {
        kept.push([a, b]);
        continue;
      }
      fresh -= Math.max(0, Math.min(b, last) - Math.max(a, first) + 1);
      first = Math.min(first, a);
      last = Math.max(last, b);
    }
    kept.push([first, last]);
    this.#retentionCounted = kept.sort((x, y) => x[0] - y[0]);
    return fresh;
  }

  /** Attaches a stream; an attached one is ended first (takeover). */
  attach(wake: () => void, end: (why: string, code: StreamEnd) => void): void {
    this.#end?.("another stream subscribed to this listener", "takeover");
    this.#wake = wake;
    this.#end = end;
  }

  /** Detaches the stream whose `end` this is (a stale detach is ignored). */
  detach(end: (why: string, code: StreamEnd) => void, now: number): void {
    if (this.#end !== end) return;
    this.#wake = undefined;
    this.#end = undefined;
    this.detachedAt = now;
  }

  /** Ends the attached stream: normally once its queue is sent ("removed"), or at once as the server shuts down. */
  close(why: string, how: StreamEnd = "removed"): void {
    const end = this.#end;
    this.#wake = undefined;
    this.#end = undefined;
    end?.(why, how);
  }
}
