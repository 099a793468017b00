/**
 * A listener's bounded queue. The producer (the source's reader) never
 * waits: when the queue holds `capacity` exits, the policy drops the newest
 * (as the kernel does with a full socket buffer) or the oldest, and the drop
 * becomes a loss marker in stream order with its exact seq range. Markers do
 * not count toward capacity; adjacent contiguous drops merge into one, so
 * markers stay bounded by the exits between them.
 *
 * Every queued item is charged to a memory budget account (budget.ts): an
 * exit costs what the caller says its record costs plus the item itself; a
 * marker its own small object. An exit whose charge does not fit is dropped
 * exactly as when the queue is full (drop-oldest first gives up the
 * queue's own oldest exits to make room). Charges are given back as items
 * are taken; markers are charged even past the budget, since exact loss
 * counts depend on them and they stay bounded by the exits between them.
 */
import { type BudgetAccount, type BudgetHolder, type BudgetPool, CLOSED_POOL, unbudgeted } from "./budget.ts";

/** Why events were lost (mirrors taskwire.v1.LossReason). */
export type LossKind = "subscriber-overflow" | "kernel-overflow" | "retention" | "restart";

/** What to drop when full. */
export type OverflowPolicy = "drop-newest" | "drop-oldest";

/** What the core needs of a record: the CPU it belongs to. Everything else is opaque here. */
export interface CpuRecord {
  readonly cpu: number;
}

/** A queued exit. */
export interface QueuedExit<R extends CpuRecord = CpuRecord> {
  readonly kind: "exit";
  readonly seq: number;
  readonly record: R;
  /** What it is charged to the budget: the record's bytes plus QUEUED_EXIT_BYTES (set by the queue). */
  readonly bytes?: number;
}

/** A queued loss marker covering seqs first..last (all of them lost). */
export interface QueuedLoss {
  readonly kind: "lost";
  first: number;
  last: number;
  readonly reason: LossKind;
  /** CPU of a kernel overflow; -1 otherwise. */
  readonly cpu: number;
}

/** A queued exit or loss marker. */
export type QueueItem<R extends CpuRecord = CpuRecord> = QueuedExit<R> | QueuedLoss;

/**
 * What queueing an exit costs beyond its record: the item object and its
 * slot in the queue's array (59 bytes measured on Node 20 x64, which has no
 * pointer compression), with room for the array's growth.
 */
export const QUEUED_EXIT_BYTES = 80;

/** What a loss marker costs (a five-field object and its slot). */
export const LOSS_MARKER_BYTES = 96;

/** What a queue item is charged while queued (and while in flight). */
export function itemBytes(item: QueueItem): number {
  return item.kind === "exit" ? (item.bytes ?? QUEUED_EXIT_BYTES) : LOSS_MARKER_BYTES;
}

/** Where a queue charges what it holds. */
export interface QueueMemory {
  readonly account: BudgetAccount;
  /** Called once when an exit does not fit, before it is dropped: frees memory elsewhere (the listener's retention). */
  readonly reclaim?: ((bytes: number) => void) | undefined;
}

/** A bounded queue of exits and loss markers. */
export interface EventQueue<R extends CpuRecord = CpuRecord> {
  readonly capacity: number;
  readonly policy: OverflowPolicy;
  /** Exits queued (markers excluded). */
  readonly depth: number;
  /** Items queued (exits and markers). */
  readonly length: number;
  /** Seq of the last exit push() queued (0 before any). */
  readonly lastQueued: number;
  /**
   * Queues an exit with its seq, charging `bytes` (its record's cost) plus
   * QUEUED_EXIT_BYTES; returns how many exits were dropped (this one, or
   * older ones to make room), 0 when none.
   */
  push(seq: number, record: R, bytes?: number): number;
  /** Queues a loss marker at the tail (kernel overflow, restart, ...). */
  pushLoss(first: number, last: number, reason: LossKind, cpu?: number): void;
  /**
   * Removes and returns up to `max` items from the head, giving back their
   * charges; with `hold`, their charges stay (the caller gives back
   * `heldBytes` itself once it is done with them).
   */
  take(max: number, hold?: boolean): QueueItem<R>[];
  /** What the items of the last take(max, true) are charged. */
  readonly heldBytes: number;
}

/** Creates an empty queue; without `memory` it charges the shared unlimited budget (budget.ts unbudgeted()). */
export function createEventQueue<R extends CpuRecord>(
  capacity: number,
  policy: OverflowPolicy = "drop-newest",
  memory?: QueueMemory,
): EventQueue<R> {
  if (!Number.isInteger(capacity) || capacity < 1) {
    throw new RangeError(`queue capacity must be a positive integer, got ${capacity}`);
  }
  return new _EventQueue<R>(capacity, policy, memory ?? { account: unbudgeted() });
}

class _EventQueue<R extends CpuRecord> implements EventQueue<R>, BudgetHolder {
  readonly capacity: number;
  readonly policy: OverflowPolicy;
  depth = 0;
  lastQueued = 0;
  heldBytes = 0;
  // Taken slots are cleared at once (so taken records can die young) and cut off now and then by #compact().
  #items: (QueueItem<R> | undefined)[] = [];
  #head = 0;
  /** Bytes its items are charged (counted here, so a push touches no per-listener object but the queue). */
  bytes = 0;
  #pool: BudgetPool;
  readonly #reclaim: ((bytes: number) => void) | undefined;

  constructor(capacity: number, policy: OverflowPolicy, memory: QueueMemory) {
    this.capacity = capacity;
    this.policy = policy;
    this.#pool = memory.account.pool;
    memory.account.attach(this);
    this.#reclaim = memory.reclaim;
  }

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(seq: number, record: R, bytes = 0): number {
    const cost = bytes + QUEUED_EXIT_BYTES;
    if (this.depth < this.capacity && this.#pool.tryCharge(cost)) return this.#append(seq, record, cost);
    let dropped = 0;
    if (this.depth >= this.capacity) {
      if (this.policy === "drop-newest") return this.#lose(seq, dropped);
      this.#dropOldest();
      dropped++;
    }
    while (!this.#tryCharge(cost)) {
      // Over budget: drop-newest drops this exit; drop-oldest gives up its own oldest until this one fits.
      if (this.policy === "drop-newest" || this.depth === 0) return this.#lose(seq, dropped);
      this.#dropOldest();
      dropped++;
    }
    return this.#append(seq, record, cost) + dropped;
  }

  #append(seq: number, record: R, bytes: number): 0 {
    this.bytes += bytes;
    this.#items.push({ kind: "exit", seq, record, bytes });
    this.depth++;
    this.lastQueued = seq;
    return 0;
  }

  pushLoss(first: number, last: number, reason: LossKind, cpu = -1): void {
    const tail = this.#items[this.#items.length - 1];
    if (this.length > 0 && tail !== undefined && mergeable(tail, first, reason, cpu)) {
      tail.last = last;
      return;
    }
    this.#charge(LOSS_MARKER_BYTES);
    this.#items.push({ kind: "lost", first, last, reason, cpu });
  }

  take(max: number, hold = false): QueueItem<R>[] {
    const end = Math.min(this.#items.length, this.#head + max);
    const out = this.#items.slice(this.#head, end) as QueueItem<R>[];
    // Taking everything drops the whole array (#compact) instead.
    if (end < this.#items.length) this.#items.fill(undefined, this.#head, end);
    this.#head = end;
    let bytes = 0, exits = 0;
    for (let i = 0; i < out.length; i++) {
      const item = out[i]!;
      if (item.kind === "exit") {
        exits++;
        bytes += item.bytes ?? QUEUED_EXIT_BYTES;
      } else bytes += LOSS_MARKER_BYTES;
    }
    this.depth -= exits;
    this.bytes -= bytes;
    if (hold) this.heldBytes = bytes;
    else this.#pool.release(bytes);
    this.#compact();
    return out;
  }

  detachBudget(): void {
    this.#pool = CLOSED_POOL;
    this.bytes = 0;
  }

  // Charges the pool `cost` for an exit about to be appended (which counts it), after the reclaim hook has freed what it can if need be.
  #tryCharge(cost: number): boolean {
    if (this.#pool.tryCharge(cost)) return true;
    if (this.#reclaim === undefined) return false;
    this.#reclaim(cost);
    return this.#pool.tryCharge(cost);
  }

  // Charges `cost` even past the budget.
  #charge(cost: number): void {
    this.#pool.charge(cost);
    this.bytes += cost;
  }

  #release(cost: number): void {
    this.#pool.release(cost);
    this.bytes -= cost;
  }

  #lose(seq: number, dropped: number): number {
    this.pushLoss(seq, seq, "subscriber-overflow");
    return dropped + 1;
  }

  // The oldest exit becomes a loss marker in its own place: everything before
  // it is older, everything after it newer, so stream order holds.
  #dropOldest(): void {
    let i = this.#head;
    while (this.#items[i]!.kind !== "exit") i++;
    const exit = this.#items[i] as QueuedExit<R>;
    const seq = exit.seq;
    this.depth--;
    this.#release(itemBytes(exit));
    const prev = i > this.#head ? this.#items[i - 1]! : undefined;
    if (prev !== undefined && mergeable(prev, seq, "subscriber-overflow", -1)) {
      prev.last = seq;
      this.#items.copyWithin(this.#head + 1, this.#head, i);
      this.#items[this.#head] = undefined;
      this.#head++;
    } else {
      this.#charge(LOSS_MARKER_BYTES);
      this.#items[i] = { kind: "lost", first: seq, last: seq, reason: "subscriber-overflow", cpu: -1 };
    }
  }

  #compact(): void {
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
  }
}

function mergeable(item: QueueItem, first: number, reason: LossKind, cpu: number): item is QueuedLoss {
  return item.kind === "lost" && item.reason === reason && item.cpu === cpu && item.last + 1 === first;
}
