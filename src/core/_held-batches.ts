/**
 * What a listener's streams hold once it is out of the queue: the batch in
 * flight (taken, charged until the stream has written it and takes again),
 * the batch of each stream taken over since (the old stream holds it until
 * it is resumed or aborted, which a stalled client's may never be), and each
 * resumed stream's last replay batch (which the retention may have let go of
 * meanwhile). All of it stays charged to the listener's account, and told to
 * the slab ledger, until the stream that holds it lets go.
 */
import type { BudgetAccount } from "./budget.ts";
import type { CpuRecord, QueueItem } from "./event-queue.ts";
import type { StreamItem } from "./retention.ts";

/** How a stream is told it ends (Listener.attach's `end`): the key of what it holds. */
export type StreamEndFn = (why: string, code: "removed" | "takeover" | "shutdown" | "stalled") => void;

/**
 * When a stall sweep (stalled()) first saw a held batch, and whether its
 * stream was told it stalled. Sweeps run once a second, so a batch is
 * judged by when a sweep first found it, not when it was taken: the hot
 * path (a take per batch) reads no clock.
 */
interface Seen {
  seenAt?: number | undefined;
  told?: boolean | undefined;
}

/** A replay batch's retained payloads, charged `bytes` while its stream (`end`) holds them. */
export interface Replayed extends Seen {
  bytes: number;
  payloads: unknown[];
  end?: StreamEndFn | undefined;
}

/**
 * A batch taken for a stream, charged `bytes` until the stream has written
 * it. Once encoded (`encoded`), its items are let go: the transport holds
 * its bytes alone.
 */
interface InFlight<R extends CpuRecord> extends Seen {
  readonly bytes: number;
  readonly items: readonly QueueItem<R>[];
  readonly encoded?: boolean;
}

// Whether a batch in flight holds anything: items, or their encoded bytes.
function holds(f: InFlight<CpuRecord>): boolean {
  return f.items.length > 0 || f.encoded === true;
}

/** The batches one listener's streams hold. */
export class HeldBatches<R extends CpuRecord> {
  readonly #account: BudgetAccount;
  readonly #sizeOfPayload: (payload: unknown) => number;
  #inFlight: InFlight<R> = { bytes: 0, items: [] };
  readonly #orphans = new Map<StreamEndFn, InFlight<R>>();
  readonly #replays = new Set<Replayed>();

  constructor(account: BudgetAccount, sizeOfPayload: (payload: unknown) => number) {
    this.#account = account;
    this.#sizeOfPayload = sizeOfPayload;
  }

  /** Batches of taken-over streams still held. */
  get orphans(): number {
    return this.#orphans.size;
  }

  /** The attached stream took `items`, whose queue charge `bytes` the account now holds (adopted). */
  took(items: readonly QueueItem<R>[], bytes: number): void {
    this.#account.adopt(bytes);
    this.#inFlight = { bytes, items };
  }

  /**
   * The attached stream encoded its batch in flight into `bytes` (what its
   * transport now holds): where that is less than the batch's charge, the
   * rest is given back and its items let go, so the records (and the slabs
   * they keep alive) can be collected while a client that reads nothing
   * holds the bytes. Where it is not, nothing changes.
   */
  encoded(bytes: number): void {
    const f = this.#inFlight;
    if (f.items.length === 0 || bytes >= f.bytes) return;
    this.#account.release(f.bytes - bytes);
    this.#inFlight = { bytes, items: [], encoded: true, seenAt: f.seenAt, told: f.told };
  }

  /** The attached stream wrote its batch in flight (it takes again, or detached). */
  written(): void {
    if (this.#inFlight.bytes === 0 && !holds(this.#inFlight)) return; // nothing held: no new empty batch per idle wait
    this.#account.release(this.#inFlight.bytes);
    this.#inFlight = { bytes: 0, items: [] };
  }

  /** The attached stream, told it ends by `end`, was taken over: its batch in flight stays held until it detaches. */
  takenOver(end: StreamEndFn): void {
    if (holds(this.#inFlight)) this.#orphans.set(end, this.#inFlight);
    else this.#account.release(this.#inFlight.bytes);
    this.#inFlight = { bytes: 0, items: [] };
  }

  /** The stream told it ends by `end` detached: what it held as a taken-over stream is given back. */
  detached(end: StreamEndFn): void {
    const orphan = this.#orphans.get(end);
    if (orphan === undefined) return;
    this.#orphans.delete(end);
    this.#account.release(orphan.bytes);
  }

  /** A replay batch handed to its stream `end`: charged (even past the budget: it is held, one batch a stream) until let go. */
  hold(held: Replayed, items: readonly StreamItem<R, unknown>[], end: StreamEndFn | undefined): void {
    if (this.#account.closed) return;
    held.end = end;
    held.seenAt = undefined;
    held.told = false;
    for (const item of items) {
      if (item.kind !== "retained") continue;
      held.payloads.push(item.payload);
      held.bytes += this.#sizeOfPayload(item.payload);
    }
    this.#account.charge(held.bytes);
    this.#replays.add(held);
  }

  /** The stream asked for its next replay batch, or ended. */
  letGo(held: Replayed): void {
    if (!this.#replays.delete(held)) return;
    this.#account.release(held.bytes);
    held.bytes = 0;
    held.payloads = [];
  }

  /**
   * A stall sweep at `now`: notes when each held batch (in flight, or a
   * replay batch) was first seen, and with `judge`, returns the streams whose
   * batch a sweep at least `ms` before already saw, each once; `attached` is
   * the stream that holds the batch in flight. Such a stream's client has
   * not taken that batch for that long (it reads nothing, or slower than a
   * batch in that time): the batch is not written, and it cannot be dropped.
   */
  stalled(now: number, ms: number, attached: StreamEndFn | undefined, judge: boolean): StreamEndFn[] {
    const found: StreamEndFn[] = [];
    const check = (held: Seen, empty: boolean, end: StreamEndFn | undefined): void => {
      if (empty || end === undefined || held.told === true) return;
      held.seenAt ??= now;
      if (!judge || now - held.seenAt < ms) return;
      held.told = true;
      found.push(end);
    };
    check(this.#inFlight, !holds(this.#inFlight), attached);
    for (const [end, orphan] of this.#orphans) check(orphan, false, end);
    for (const held of this.#replays) check(held, held.payloads.length === 0, held.end);
    return found;
  }

  /** Calls `record` with each record of the batches in flight, and `payload` with each replayed payload and its charge. */
  forEach(record: (r: R) => void, payload: (p: unknown, bytes: number) => void): void {
    for (const batch of [this.#inFlight, ...this.#orphans.values()]) {
      for (const item of batch.items) if (item.kind === "exit") record(item.record);
    }
    for (const held of this.#replays) for (const p of held.payloads) payload(p, this.#sizeOfPayload(p));
  }

  /** Forgets everything (the account gave it all back as it closed). */
  clear(): void {
    this.#inFlight = { bytes: 0, items: [] };
    this.#orphans.clear();
    this.#replays.clear();
  }
}
