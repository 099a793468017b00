/**
 * A listener's bounded queue. The producer (the source's reader) never
 * waits: when the queue holds `capacity` exits, the policy drops the newest
 * (as the kernel does with a full socket buffer) or the oldest, and the drop
 * becomes a loss marker in stream order with its exact seq range. Markers do
 * not count toward capacity; adjacent contiguous drops merge into one, so
 * markers stay bounded by the exits between them.
 */
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

/** A bounded queue of exits and loss markers. */
export interface EventQueue<R extends CpuRecord = CpuRecord> {
  readonly capacity: number;
  readonly policy: OverflowPolicy;
  /** Exits queued (markers excluded). */
  readonly depth: number;
  /** Items queued (exits and markers). */
  readonly length: number;
  /** Queues an exit with its seq; returns the seq dropped to make room, or 0. */
  push(seq: number, record: R): number;
  /** Queues a loss marker at the tail (kernel overflow, restart, ...). */
  pushLoss(first: number, last: number, reason: LossKind, cpu?: number): void;
  /** Removes and returns up to `max` items from the head. */
  take(max: number): QueueItem<R>[];
}

/** Creates an empty queue. */
export function createEventQueue<R extends CpuRecord>(
  capacity: number,
  policy: OverflowPolicy = "drop-newest",
): EventQueue<R> {
  if (!Number.isInteger(capacity) || capacity < 1) {
    throw new RangeError(`queue capacity must be a positive integer, got ${capacity}`);
  }
  return new _EventQueue<R>(capacity, policy);
}

class _EventQueue<R extends CpuRecord> implements EventQueue<R> {
  readonly capacity: number;
  readonly policy: OverflowPolicy;
  depth = 0;
  #items: QueueItem<R>[] = [];
  #head = 0;

  constructor(capacity: number, policy: OverflowPolicy) {
    this.capacity = capacity;
    this.policy = policy;
  }

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(seq: number, record: R): number {
    if (this.depth < this.capacity) {
      this.#append({ kind: "exit", seq, record });
      return 0;
    }
    if (this.policy === "drop-newest") {
      this.pushLoss(seq, seq, "subscriber-overflow");
      return seq;
    }
    const dropped = this.#dropOldest();
    this.#append({ kind: "exit", seq, record });
    return dropped;
  }

  pushLoss(first: number, last: number, reason: LossKind, cpu = -1): void {
    const tail = this.#items[this.#items.length - 1];
    if (this.length > 0 && tail !== undefined && mergeable(tail, first, reason, cpu)) {
      tail.last = last;
      return;
    }
    this.#items.push({ kind: "lost", first, last, reason, cpu });
  }

  take(max: number): QueueItem<R>[] {
    const end = Math.min(this.#items.length, this.#head + max);
    const out = this.#items.slice(this.#head, end);
    this.#head = end;
    for (const item of out) if (item.kind === "exit") this.depth--;
    this.#compact();
    return out;
  }

  #append(item: QueuedExit<R>): void {
    this.#items.push(item);
    this.depth++;
  }

  // The oldest exit becomes a loss marker in its own place: everything before
  // it is older, everything after it newer, so stream order holds.
  #dropOldest(): number {
    let i = this.#head;
    while (this.#items[i]!.kind !== "exit") i++;
    const seq = (this.#items[i] as QueuedExit<R>).seq;
    this.depth--;
    const prev = i > this.#head ? this.#items[i - 1]! : undefined;
    if (prev !== undefined && mergeable(prev, seq, "subscriber-overflow", -1)) {
      prev.last = seq;
      this.#items.copyWithin(this.#head + 1, this.#head, i);
      this.#head++;
    } else {
      this.#items[i] = { kind: "lost", first: seq, last: seq, reason: "subscriber-overflow", cpu: -1 };
    }
    return seq;
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
