/**
 * A listener's replays: what a client that has everything up to a seq
 * missed of what was handed out, the retained items after it, with a
 * RETENTION loss for any seqs no longer retained, made a batch at a time. A
 * replay made at once held an object and a view per retained exit (up to a
 * million) for as long as its client took to read them, outside the memory
 * budget; a batch at a time holds one batch, charged (and its slabs counted)
 * until the next call, or a call with `max` 0 as its stream ends: the
 * retention may have let go of it meanwhile. Seqs evicted while the replay
 * runs are reported as RETENTION loss too; each seq is counted lost once,
 * however often streams resume over it.
 */
import type { BudgetAccount } from "./budget.ts";
import type { CpuRecord } from "./event-queue.ts";
import { SeqOutOfRangeError } from "./errors.ts";
import { COUNTED_RANGE_BYTES, type LossCounters } from "./listener-options.ts";
import { SeqRanges } from "./_seq-ranges.ts";
import type { HeldBatches, Replayed, StreamEndFn } from "./_held-batches.ts";
import { firstSeqOf, lastSeqOf, type Retention, type StreamItem } from "./retention.ts";

/** What a replay asks its listener at each batch: both change while it runs (a takeover, a removal). */
export interface ReplayTarget {
  /** The stream its batch is held for: the attached one, or the one draining a removed listener. */
  stream(): StreamEndFn | undefined;
  /** Told of RETENTION loss counted while the replay runs (a removed listener's losses go elsewhere). */
  lateLoss(count: number): void;
}

/** Throws SeqOutOfRangeError unless a stream could resume after `seq`, `handedOut` being the last seq sent. */
export function checkResume(seq: bigint, handedOut: number): void {
  if (seq < 0n || seq > BigInt(handedOut)) {
    throw new SeqOutOfRangeError(
      `after_seq ${seq} is beyond the last event this listener sent (${handedOut}); resume from a seq you received`,
    );
  }
}

/** What a listener's replays share: its retention, its streams' held batches, its account and loss counters. */
export interface ReplaySources<R extends CpuRecord, P> {
  readonly retention: Retention<R, P>;
  readonly held: HeldBatches<R>;
  readonly account: BudgetAccount;
  readonly lost: LossCounters;
}

/** The replays of one listener, and the seqs they counted as RETENTION loss. */
export class Replays<R extends CpuRecord, P> {
  readonly #retention: Retention<R, P>;
  readonly #held: HeldBatches<R>;
  readonly #account: BudgetAccount;
  readonly #lost: LossCounters;
  /** Seqs already counted as RETENTION loss: a second resume over a gap is not new loss. */
  #retentionCounted = new SeqRanges();

  constructor(o: ReplaySources<R, P>) {
    this.#retention = o.retention;
    this.#held = o.held;
    this.#account = o.account;
    this.#lost = o.lost;
  }

  /**
   * The replay of seqs seq+1..end (checked by the caller): each call gives
   * the next at most `max` items, none once it has reached `end`.
   */
  from(seq: number, end: number, target: ReplayTarget): (max: number) => StreamItem<R, P>[] {
    let at = seq;
    const held: Replayed = { bytes: 0, payloads: [] };
    return (max) => {
      this.#held.letGo(held);
      if (at >= end || max < 1) return [];
      const items = this.#replayAfter(at, end, max, target);
      at = lastSeqOf(items[items.length - 1]!);
      this.#held.hold(held, items, target.stream());
      return items;
    };
  }

  // At most `max` (>= 1) items covering seqs seq+1..end: the retained ones, after a RETENTION loss for any gap before them.
  #replayAfter(seq: number, end: number, max: number, target: ReplayTarget): StreamItem<R, P>[] {
    const items: StreamItem<R, P>[] = this.#retention.after(seq, max).filter((item) => firstSeqOf(item) <= end);
    const firstKept = items.length > 0 ? firstSeqOf(items[0]!) : end + 1;
    if (firstKept > seq + 1) {
      const fresh = this.#countRetention(seq + 1, firstKept - 1);
      this.#lost.retention += fresh;
      target.lateLoss(fresh);
      items.unshift({ kind: "lost", first: seq + 1, last: firstKept - 1, reason: "retention", cpu: -1 });
      if (items.length > max) items.pop();
    }
    return items;
  }

  // Adds first..last to the counted seqs; returns how many were not counted before. The ranges are
  // charged to its account even past the budget, as loss markers are: they stay bounded by the exits
  // between them, and the exact count depends on them.
  #countRetention(first: number, last: number): number {
    const before = this.#retentionCounted.size;
    const fresh = this.#retentionCounted.add(first, last);
    const grown = (this.#retentionCounted.size - before) * COUNTED_RANGE_BYTES;
    if (grown > 0) this.#account.charge(grown);
    else if (grown < 0) this.#account.release(-grown);
    return fresh;
  }
}
