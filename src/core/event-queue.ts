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
 * as when the queue is full (drop-oldest first gives up the queue's own
 * oldest exits to make room), its marker saying MEMORY_BUDGET. Charges are
 * given back as items are taken; markers are charged even past the budget,
 * since exact loss counts depend on them and they stay bounded by the exits
 * between them.
 * A queue charges its exits through the owner's fair share (BudgetPool
 * claim), and gives up its oldest when another owner under its fair share
 * takes room (dropBytes): live exits are what a stream needs to keep up.
 */
import { type BudgetAccount, type BudgetHolder, type BudgetPool, CLOSED_POOL, unbudgeted } from "./budget.ts";
import type { CpuRecord, LossKind, OverflowPolicy, QueuedLoss, QueueItem } from "./_stream-items.ts";

export type { CpuRecord, LossKind, OverflowPolicy, QueuedExit, QueuedLoss, QueueItem } from "./_stream-items.ts";

/**
 * What queueing an exit costs beyond its record: its three slots (record,
 * seq, charge) in the queue's arrays, 24 bytes on Node 20 x64 (no pointer
 * compression), with room for the arrays' growth and the QueuedExit that
 * take() makes of it (kept at the figure measured when each queued exit was
 * an object: the safe side).
 */
export const QUEUED_EXIT_BYTES = 80;

/** What a loss marker costs (a five-field object and its slot). */
export const LOSS_MARKER_BYTES = 96;

/** Where a queue charges what it holds. */
export interface QueueMemory {
  readonly account: BudgetAccount;
  /**
   * Called once when an exit does not fit, before it is dropped: frees memory elsewhere (the listener's retention),
   * returning the bytes it gave back.
   */
  readonly reclaim?: ((bytes: number) => number) | undefined;
  /** Told of exits it dropped outside push() (another owner took their room; see dropBytes). */
  readonly dropped?: ((exits: number) => void) | undefined;
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
  /** Exits it dropped because it was full (push() returns each call's share, with budgetDrops'): SUBSCRIBER_OVERFLOW losses. */
  readonly drops: number;
  /** Exits it dropped because the memory budget had no room for them (push() and dropBytes): MEMORY_BUDGET losses. */
  readonly budgetDrops: number;
  /** Whether its newest item covers `seq`: an exit with that seq, or a loss marker ending at it. */
  endsAt(seq: number): boolean;
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
  /** Calls `fn` with each queued exit's record, oldest first. */
  forEachRecord(fn: (record: R) => void): void;
  /**
   * Drops its oldest exits until they gave back `bytes` or none is left (another owner under its fair share
   * took their room: budget.ts), as MEMORY_BUDGET loss; returns the bytes given back.
   */
  dropBytes(bytes: number): number;
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

// A loss marker as the queue holds it: told apart from a record (opaque to the core) by its class.
class _Loss implements QueuedLoss {
  readonly kind = "lost";
  constructor(public first: number, public last: number, readonly reason: LossKind, readonly cpu: number) {}
}

// Queued exits are no objects of their own: a slot holds the record itself
// (or a loss marker), its seq and charge sit in number arrays beside it, and
// take() makes the QueuedExit objects, which die young. An object per
// listener per queued exit, held while the stream catches up, survived the
// young-generation collections and made old-space marking work that grew
// with every subscriber (measured: 7 major collections per 10,000 records
// with 100 streams).
class _EventQueue<R extends CpuRecord> implements EventQueue<R>, BudgetHolder {
  readonly capacity: number;
  readonly policy: OverflowPolicy;
  depth = 0;
  lastQueued = 0;
  drops = 0;
  budgetDrops = 0;
  heldBytes = 0;
  // Taken slots are cleared at once (so taken records can die young) and cut off now and then by #compact().
  #slots: (R | _Loss | undefined)[] = [];
  /** Each exit's seq (unused for a marker). */
  #seqs: number[] = [];
  /** What each slot is charged. */
  #costs: number[] = [];
  #head = 0;
  /**
   * The tail's loss marker while the queue is full under drop-newest: the
   * next exit's drop only extends it (a subscriber that stopped reading
   * costs two field writes per exit, not a walk of the queue's tail; with a
   * thousand of them that walk was a third of the server's CPU). Anything
   * that changes the queue but another such drop forgets it.
   */
  #overflow: _Loss | undefined;
  /** Bytes its items are charged (counted here, so a push touches no per-listener object but the queue). */
  bytes = 0;
  #pool: BudgetPool;
  readonly #reclaim: ((bytes: number) => number) | undefined;
  readonly #dropped: ((exits: number) => void) | undefined;

  constructor(capacity: number, policy: OverflowPolicy, memory: QueueMemory) {
    this.capacity = capacity;
    this.policy = policy;
    this.#pool = memory.account.pool;
    memory.account.attach(this);
    this.#reclaim = memory.reclaim;
    this.#dropped = memory.dropped;
  }

  get length(): number {
    return this.#slots.length - this.#head;
  }

  push(seq: number, record: R, bytes = 0): number {
    const overflow = this.#overflow;
    if (overflow !== undefined) {
      if (overflow.last + 1 === seq) {
        overflow.last = seq; // still full: nothing was taken since the last drop
        this.drops++;
        return 1;
      }
      this.#overflow = undefined;
    }
    const cost = bytes + QUEUED_EXIT_BYTES;
    if (this.depth < this.capacity && this.#pool.tryCharge(cost)) return this.#append(seq, record, cost);
    let dropped = 0;
    if (this.depth >= this.capacity) {
      if (this.policy === "drop-newest") {
        dropped = this.#lose(seq, dropped, "subscriber-overflow");
        this.#overflow = this.#slots[this.#slots.length - 1] as _Loss;
        return dropped;
      }
      this.#dropOldest("subscriber-overflow");
      dropped++;
    }
    // A push that found the queue full drops for that reason alone: a drop-oldest queue full and over budget too
    // dropped for both, and markers of two reasons side by side never join (one more marker per exit, each drop
    // walking them all: a core's worth of CPU in a minute).
    const reason = dropped > 0 ? "subscriber-overflow" : "memory-budget";
    while (!this.#tryCharge(cost)) {
      // Over budget: drop-newest drops this exit; drop-oldest gives up its own oldest until this one fits.
      if (this.policy === "drop-newest" || this.depth === 0) return this.#lose(seq, dropped, reason);
      this.#dropOldest(reason);
      dropped++;
    }
    return this.#append(seq, record, cost) + dropped;
  }

  #append(seq: number, record: R, bytes: number): 0 {
    this.bytes += bytes;
    this.#slots.push(record);
    this.#seqs.push(seq);
    this.#costs.push(bytes);
    this.depth++;
    this.lastQueued = seq;
    return 0;
  }

  pushLoss(first: number, last: number, reason: LossKind, cpu = -1): void {
    this.#overflow = undefined;
    const tail = this.#slots[this.#slots.length - 1];
    if (this.length > 0 && tail instanceof _Loss && mergeable(tail, first, reason, cpu)) {
      tail.last = last;
      return;
    }
    this.#charge(LOSS_MARKER_BYTES);
    this.#slots.push(new _Loss(first, last, reason, cpu));
    this.#seqs.push(0);
    this.#costs.push(LOSS_MARKER_BYTES);
  }

  take(max: number, hold = false): QueueItem<R>[] {
    this.#overflow = undefined;
    const end = Math.min(this.#slots.length, this.#head + max);
    const out: QueueItem<R>[] = new Array(end - this.#head);
    const slots = this.#slots, seqs = this.#seqs, costs = this.#costs;
    let bytes = 0, exits = 0;
    for (let i = this.#head, k = 0; i < end; i++, k++) {
      const slot = slots[i]!, cost = costs[i]!;
      bytes += cost;
      if (slot instanceof _Loss) out[k] = slot;
      else {
        exits++;
        out[k] = { kind: "exit", seq: seqs[i]!, record: slot };
      }
    }
    // Taking everything drops the whole array (#compact) instead.
    if (end < slots.length) slots.fill(undefined, this.#head, end);
    this.#head = end;
    this.depth -= exits;
    this.bytes -= bytes;
    if (hold) this.heldBytes = bytes;
    else this.#pool.release(bytes);
    this.#compact();
    return out;
  }

  endsAt(seq: number): boolean {
    if (this.length === 0) return false;
    const tail = this.#slots[this.#slots.length - 1];
    return tail instanceof _Loss ? tail.last === seq : this.#seqs[this.#seqs.length - 1] === seq;
  }

  forEachRecord(fn: (record: R) => void): void {
    const slots = this.#slots;
    for (let i = this.#head; i < slots.length; i++) {
      const slot = slots[i]!;
      if (!(slot instanceof _Loss)) fn(slot);
    }
  }

  detachBudget(): void {
    this.#pool = CLOSED_POOL;
    this.bytes = 0;
  }

  get droppable(): number {
    // Dropping its exits leaves at least one marker where they were.
    return this.depth === 0 ? 0 : Math.max(0, this.bytes - (this.length - this.depth + 1) * LOSS_MARKER_BYTES);
  }

  dropBytes(bytes: number): number {
    const before = this.bytes;
    let exits = 0;
    for (; this.depth > 0 && before - this.bytes < bytes; exits++) this.#dropOldest("memory-budget");
    if (exits > 0) this.#dropped?.(exits);
    return before - this.bytes;
  }

  // Charges the pool `cost` for an exit about to be appended (which counts it): through the owner's fair share
  // first (room taken from owners over theirs), and only then by the reclaim hook giving up the listener's own.
  // When the hook gave nothing back, the budget is as the refused claim found it: asking again would be refused
  // again (a third of a full budget's claims, per listener over its share per exit).
  #tryCharge(cost: number): boolean {
    if (this.#pool.claim(cost)) return true;
    if (this.#reclaim === undefined || this.#reclaim(cost) === 0) return false;
    return this.#pool.claim(cost);
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

  #lose(seq: number, dropped: number, reason: "subscriber-overflow" | "memory-budget"): number {
    this.pushLoss(seq, seq, reason);
    this.#count(reason);
    return dropped + 1;
  }

  #count(reason: "subscriber-overflow" | "memory-budget"): void {
    if (reason === "memory-budget") this.budgetDrops++;
    else this.drops++;
  }

  // The oldest exit becomes a loss marker in its own place: everything before
  // it is older, everything after it newer, so stream order holds. It joins
  // the drop marker before it, or after it, where their seqs run on (and those
  // two then join too): dropping the exits between markers must leave one
  // marker, not one more each time. Left apart, a stalled queue whose exits
  // were dropped run by run gained a marker per run, charged past the budget,
  // and each drop walked and shifted them all (13,000 markers in 45 s under
  // principals that came and went). A full queue's drops and a full budget's
  // join too, the marker keeping the reason it had: they alternated, push by
  // push and claim by claim, and kept a marker per two exits (a core of CPU);
  // the listener's counters keep each reason exact.
  #dropOldest(reason: "subscriber-overflow" | "memory-budget"): void {
    this.#overflow = undefined;
    const slots = this.#slots;
    let i = this.#head;
    while (slots[i] instanceof _Loss) i++;
    const seq = this.#seqs[i]!;
    this.depth--;
    this.#release(this.#costs[i]!);
    const prev = i > this.#head ? slots[i - 1] : undefined, next = slots[i + 1];
    if (prev instanceof _Loss && mergeable(prev, seq, reason, -1)) {
      prev.last = seq;
      this.#cut(i);
      if (next instanceof _Loss && mergeable(prev, next.first, next.reason, next.cpu)) this.#join(i, prev, next);
    } else if (next instanceof _Loss && next.cpu === -1 && sameKind(next.reason, reason) && next.first === seq + 1) {
      next.first = seq;
      this.#cut(i);
    } else {
      this.#charge(LOSS_MARKER_BYTES);
      slots[i] = new _Loss(seq, seq, reason, -1);
      this.#costs[i] = LOSS_MARKER_BYTES;
    }
    this.#count(reason);
    // A queue nobody takes from cuts its dropped head off here: only take() did, and a stalled queue that kept
    // dropping its oldest grew its arrays by a slot per exit (40 MB of heap in 25 s under churning principals).
    this.#compact();
  }

  // The marker `a` at slot i is followed by `b`, whose seqs run on from its own: `b` takes them, `a` goes.
  #join(i: number, a: _Loss, b: _Loss): void {
    b.first = a.first;
    this.#release(this.#costs[i]!);
    this.#cut(i);
  }

  // Removes slot i, which only markers precede: they move one slot on, and the head with them.
  #cut(i: number): void {
    const head = this.#head;
    for (const a of [this.#slots, this.#seqs, this.#costs] as unknown[][]) a.copyWithin(head + 1, head, i);
    this.#slots[head] = undefined;
    this.#head = head + 1;
  }

  #compact(): void {
    if (this.#head === this.#slots.length) {
      this.#slots = [];
      this.#seqs = [];
      this.#costs = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#slots.length) {
      this.#slots = this.#slots.slice(this.#head);
      this.#seqs = this.#seqs.slice(this.#head);
      this.#costs = this.#costs.slice(this.#head);
      this.#head = 0;
    }
  }
}

// Whether a marker `item` may take seqs from `first` on, lost for `reason` on `cpu`.
function mergeable(item: QueuedLoss, first: number, reason: LossKind, cpu: number): boolean {
  return sameKind(item.reason, reason) && item.cpu === cpu && item.last + 1 === first;
}

// One reason, or both the queue's own drops (a full queue's and a full budget's share a marker, which keeps the
// reason it had: see #dropOldest).
function sameKind(a: LossKind, b: LossKind): boolean {
  return a === b || (isDrop(a) && isDrop(b));
}

function isDrop(reason: LossKind): boolean {
  return reason === "subscriber-overflow" || reason === "memory-budget";
}
