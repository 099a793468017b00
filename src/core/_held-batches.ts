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
export type StreamEndFn = (why: string, code: "removed" | "takeover" | "shutdown") => void;

/** A replay batch's retained payloads, charged `bytes` while its stream holds them. */
export interface Replayed {
  bytes: number;
  payloads: unknown[];
}

/** A batch taken for a stream, charged `bytes` until the stream has written it. */
interface InFlight<R extends CpuRecord> {
  readonly bytes: number;
  readonly items: readonly QueueItem<R>[];
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

  /** The attached stream wrote its batch in flight (it takes again, or detached). */
  written(): void {
    this.#account.release(this.#inFlight.bytes);
    this.#inFlight = { bytes: 0, items: [] };
  }

  /** The attached stream, told it ends by `end`, was taken over: its batch in flight stays held until it detaches. */
  takenOver(end: StreamEndFn): void {
    if (this.#inFlight.items.length > 0) this.#orphans.set(end, this.#inFlight);
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

  /** A replay batch handed to its stream: charged (even past the budget: it is held, one batch a stream) until let go. */
  hold(held: Replayed, items: readonly StreamItem<R, unknown>[]): void {
    if (this.#account.closed) return;
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
