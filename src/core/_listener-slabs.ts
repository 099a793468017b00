/**
 * How a listener's items share the sources' slabs: which records it queues
 * as copies of their own (SPARSE_GAP), and what it is charged for the shared
 * slabs its items keep alive (the slab ledger's count, _slab-ledger.ts).
 */
import type { BudgetAccount } from "./budget.ts";
import type { CpuRecord, EventQueue } from "./event-queue.ts";
import type { HeldBatches } from "./_held-batches.ts";
import type { SharedSlabs } from "./listener-options.ts";
import type { Retention } from "./retention.ts";
import type { SlabCount } from "./_slab-ledger.ts";

/**
 * Records may share storage with the records made just before and after
 * them (the sources' slabs): a record held while its neighbours are gone
 * keeps them all alive, far beyond what it is charged (a listener with a
 * filter matching 6% of exits, never read, was measured holding 4x what it
 * was charged, and growing). A listener whose queued records are on average
 * more than SPARSE_GAP records apart (by the registry's count: a narrow
 * filter, a few CPUs of many, a full budget letting in an exit now and then)
 * queues `unshare(record)` instead, a copy made once per record.
 */
export const SPARSE_GAP = 2;

// Gaps between queued records are averaged over about this many records; a
// gap counts as at most SPARSE_CAP, so a new listener's first record is held
// apart but a dense listener is dense again after a few dozen records.
const SPARSE_WEIGHT = 1 / 8;
const SPARSE_CAP = 1024;

/** How far apart the records a listener queued are, by the registry's count of records (for SPARSE_GAP). */
export class RecordGaps {
  /** The registry's count of the last record queued. */
  #lastOrdinal = 0;
  /** Average gap between the records queued (1: every record). */
  #gap = 1;

  /** The average gap were the record `ordinal` queued next: past SPARSE_GAP, the record is held apart. */
  at(ordinal: number): number {
    return this.#gap + (Math.min(ordinal - this.#lastOrdinal, SPARSE_CAP) - this.#gap) * SPARSE_WEIGHT;
  }

  /** The record `ordinal` was queued, its average gap `gap` (from at()). */
  queued(ordinal: number, gap: number): void {
    this.#lastOrdinal = ordinal;
    this.#gap = gap;
  }
}

/** Where a listener's items are: its queue, its retention, and what its streams hold. */
export interface ListenerItems<R extends CpuRecord> {
  readonly queue: Pick<EventQueue<R>, "forEachRecord">;
  readonly retention: Pick<Retention<R, unknown>, "countSlabs">;
  readonly held: Pick<HeldBatches<R>, "forEach">;
}

/** What a listener is charged for the shared slabs its items keep alive, as the ledger last counted them. */
export class SlabCharge<R extends CpuRecord> {
  readonly #account: BudgetAccount;
  /** How its items share slabs (absent: they share none). */
  readonly #slabs: SharedSlabs<R> | undefined;
  #bytes = 0;

  constructor(account: BudgetAccount, slabs: SharedSlabs<R> | undefined) {
    this.#account = account;
    this.#slabs = slabs;
  }

  /** What it is charged now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Tells `count` of the shared slabs `items` keep alive: queued, in flight (its streams'), retained. */
  count(count: SlabCount, items: ListenerItems<R>): void {
    const slabs = this.#slabs;
    if (slabs === undefined || this.#account.closed) return;
    const { records } = slabs;
    const each = (record: R) => records.eachSlab(record, count);
    items.queue.forEachRecord(each);
    items.retention.countSlabs(count, slabs.payloads);
    items.held.forEach(each, (p, bytes) => {
      if (p instanceof Uint8Array && p.byteLength < p.buffer.byteLength) count(p.buffer, bytes, slabs.payloads);
    });
  }

  /** Charges `bytes` in all (the ledger's count), even past the budget, in place of what it charged before. */
  charge(bytes: number): void {
    if (this.#account.closed) return;
    if (bytes > this.#bytes) this.#account.charge(bytes - this.#bytes);
    else this.#account.release(this.#bytes - bytes);
    this.#bytes = bytes;
  }

  /** Its account gives everything back: it charges nothing from now on. */
  clear(): void {
    this.#bytes = 0;
  }
}
