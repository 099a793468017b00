/**
 * What a listener keeps after handing events to a stream, so a client that
 * reconnects can resume: the last `capacity` items (exits and loss markers),
 * oldest first.
 *
 * An exit is kept as an opaque payload the owner computes from the record
 * (`retain`), plus its seq and CPU in typed arrays, never as the record
 * itself: the server keeps each exit's encoded bytes, so records die young
 * (retained records would survive the young-generation collections, whose
 * pauses are a stream's latency tail). A payload that is a Uint8Array is
 * kept as its buffer, offset and length, and a replay gets a new view of the
 * same bytes: views into a shared slab then cost no object per retained
 * exit. A view object per exit, kept for the ring's length (8,192 exits by
 * default, under a second at 10,000 exits/s), outlived two young-generation
 * collections and was promoted; dying in the old generation, those views
 * started a major collection every second or so at that rate, each pausing
 * the event loop for 5-20 ms (see BENCHMARKS.md). Past telling a plain byte
 * view from anything else, the core never looks inside a payload.
 *
 * What it keeps is charged to a memory budget account (budget.ts): each
 * payload what the owner says it costs, each marker its object, and the
 * ring's slots as it grows. Retention is what a resume replays, not what a
 * live stream needs, so it yields first: when a charge does not fit (its
 * owner holds its fair share of the budget: BudgetPool.claim) it evicts its
 * oldest items to make room, and keeps fewer (or none); an owner over its
 * fair share has its retention evicted before its queues drop anything. A
 * resume over what it no longer has reports RETENTION loss, as for any
 * eviction.
 */
import { firstNotBefore } from "./_bisect.ts";
import type { SlabCount, SlabSizes } from "./_slab-ledger.ts";
import { MAX_RUNS_BASE, type RunSink, SlabRuns } from "./_slab-runs.ts";
import { type BudgetAccount, type BudgetHolder, type BudgetPool, CLOSED_POOL, unbudgeted } from "./budget.ts";
import { type CpuRecord, LOSS_MARKER_BYTES, type QueuedLoss, type QueueItem } from "./event-queue.ts";
import type { RetainedExit } from "./_stream-items.ts";

export { firstSeqOf, lastSeqOf, type RetainedExit, type StreamItem } from "./_stream-items.ts";

/**
 * What one slot of the ring costs: its seq, CPU, charge and a byte payload's offset and length in typed arrays, its
 * payload (or marker) slot, and its share of the slab runs kept (one run per 8 items at most, ~93 bytes a run with
 * its arrays' spare room, measured).
 */
export const RETAINED_SLOT_BYTES = 56;

/** The CPU slot of a loss marker (a real CPU is never negative). */
const LOSS_SLOT = -2;

/** The length slot of a payload kept as itself (a byte view's length is never negative). */
const VIEW_NONE = -1;

/** A byte view's offset and length fit the ring's Int32Array slots up to here (past it, it is kept as itself). */
const INT32_MAX = 2 ** 31 - 1;

/** Where retention charges what it keeps. */
export interface RetentionMemory<P, R = never> {
  readonly account: BudgetAccount;
  /** Bytes a retained payload costs while kept. */
  readonly sizeOfPayload: (payload: P) => number;
  /**
   * The buffer a byte-view `payload` (what `retain` made of `record`) views, when the caller knows it without the
   * view's `buffer` getter (V8 11.3 calls it as a C++ builtin, for every exit and listener); undefined: ask the view.
   * It must be that view's own buffer: retention replays offset and length within it.
   */
  readonly payloadBuffer?: ((record: R, payload: P) => ArrayBufferLike | undefined) | undefined;
}

/**
 * A ring of handed-out items that grows on demand up to its capacity (idle
 * listeners cost nothing), always the newest handed-out items without gaps.
 */
export class Retention<R extends CpuRecord, P> implements BudgetHolder {
  readonly capacity: number;
  readonly #retain: (record: R) => P;
  /** Bytes it holds (counted here, so a push touches no per-listener object but the ring). */
  bytes = 0;
  #pool: BudgetPool;
  // Typed for any payload so that a Retention<R, P> stays assignable to a Retention<R, unknown> (P only goes out).
  readonly #sizeOfPayload: (payload: unknown) => number;
  readonly #payloadBuffer: ((record: R, payload: unknown) => ArrayBufferLike | undefined) | undefined;
  #size = 0;
  /** Slot of the oldest item. */
  #start = 0;
  #seq = new Float64Array(0);
  #cpu = new Int32Array(0);
  /** What each slot's item is charged. */
  #cost = new Int32Array(0);
  /** A byte-view payload's offset in its buffer (the buffer is in #payload). */
  #offset = new Int32Array(0);
  /** A byte-view payload's length; VIEW_NONE: #payload holds the payload itself. */
  #length = new Int32Array(0);
  /**
   * Each exit's payload (or, for a byte view, its buffer: shared by the
   * exits of one slab), or the loss marker of a slot whose CPU is LOSS_SLOT:
   * one array of references, not two, since every retained slot's references
   * are traced by each major collection.
   */
  #payload: (P | ArrayBufferLike | QueuedLoss | undefined)[] = [];
  /**
   * The last buffer found not resizable: consecutive exits share a slab, and
   * reading a buffer's resizable and growable flags for every exit of every
   * listener was 3% of the main thread at 100 subscribers.
   */
  #plainBuffer: ArrayBufferLike | undefined;
  /** Items placed so far: the newest item's position in that order is #pushed - 1, the oldest's #pushed - #size. */
  #pushed = 0;
  /** The byte payloads kept in part of a larger buffer, as runs by buffer, as of the last count (countSlabs). */
  readonly #runs = new SlabRuns();

  /** Without `memory`, it charges the shared unlimited budget (budget.ts unbudgeted()) and payloads cost nothing. */
  constructor(capacity: number, retain: (record: R) => P, memory?: RetentionMemory<P, R>) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`retention capacity must be a positive integer, got ${capacity}`);
    }
    this.capacity = capacity;
    this.#retain = retain;
    const account = memory?.account ?? unbudgeted();
    this.#pool = account.pool;
    account.attach(this);
    this.#sizeOfPayload = (memory?.sizeOfPayload ?? (() => 0)) as (payload: unknown) => number;
    this.#payloadBuffer = memory?.payloadBuffer as ((record: R, payload: unknown) => ArrayBufferLike | undefined);
  }

  /** Items retained now. */
  get size(): number {
    return this.#size;
  }

  /** Keeps `item`, dropping the oldest once full or to make room in the budget (none kept if none fits). */
  push(item: QueueItem<R>): void {
    const payload = item.kind === "exit" ? this.#retain(item.record) : undefined;
    const cost = item.kind === "exit" ? this.#sizeOfPayload(payload) : LOSS_MARKER_BYTES;
    const i = this.#size < this.#seq.length && this.#pool.tryCharge(cost)
      ? this.#next(cost)
      : this.#size === this.capacity && this.#replaceOldest(cost)
      ? this.#start++
      : this.#place(cost);
    if (i < 0) return;
    this.#pushed++;
    if (this.#start === this.#seq.length) this.#start = 0;
    this.#cost[i] = cost;
    if (item.kind === "lost") {
      this.#cpu[i] = LOSS_SLOT;
      this.#payload[i] = item;
      return;
    }
    this.#seq[i] = item.seq;
    this.#cpu[i] = item.record.cpu;
    const buffer = this.#plainViewBuffer(item.record, payload);
    if (buffer !== undefined) {
      // Each read once: a view's getters are calls, not inlined, in V8 11.3.
      const view = payload as Uint8Array, offset = view.byteOffset, length = view.byteLength;
      if (offset + length <= INT32_MAX) { // within the Int32Array slots' range
        this.#payload[i] = buffer;
        this.#offset[i] = offset;
        this.#length[i] = length;
        return;
      }
    }
    this.#payload[i] = payload;
    this.#length[i] = VIEW_NONE;
  }

  /**
   * The buffer of a payload that may be kept as buffer, offset and length
   * (undefined: kept as itself): a plain Uint8Array (not a subclass such as
   * Buffer, which a replay would not give back) over a buffer that cannot
   * shrink under it.
   */
  #plainViewBuffer(record: R, p: unknown): ArrayBufferLike | undefined {
    if (!(p instanceof Uint8Array) || p.constructor !== Uint8Array) return undefined;
    const buffer = this.#payloadBuffer?.(record, p) ?? p.buffer;
    if (buffer !== this.#plainBuffer) {
      const b = buffer as { resizable?: boolean; growable?: boolean };
      if (b.resizable === true || b.growable === true) return undefined;
      this.#plainBuffer = buffer; // whether a buffer can resize is fixed when it is made
    }
    return buffer;
  }

  // The next free slot, for an item whose `cost` the pool has just been charged.
  #next(cost: number): number {
    this.bytes += cost;
    const i = this.#start + this.#size++;
    return i < this.#seq.length ? i : i - this.#seq.length;
  }

  // Full (the usual case once warm): the new item takes the oldest one's slot
  // and the charge changes by the difference. False if the budget refuses it.
  #replaceOldest(cost: number): boolean {
    const delta = cost - this.#cost[this.#start]!;
    if (delta > 0 && !this.#pool.claim(delta)) return false;
    if (delta < 0) this.#pool.release(-delta);
    this.bytes += delta;
    return true;
  }

  // A slot for an item costing `cost`, evicting and growing as the budget
  // allows; -1 when not even an empty ring has room for it.
  #place(cost: number): number {
    if (this.#size === this.capacity) this.evictOldest();
    if (this.#size === this.#seq.length && !this.#grow()) {
      // The ring is as large as the budget lets it be.
      if (this.#size === 0) return -1;
      this.evictOldest();
    }
    while (!this.#pool.claim(cost)) {
      if (this.#size === 0) return -1;
      this.evictOldest();
    }
    return this.#next(cost);
  }

  detachBudget(): void {
    this.#pool = CLOSED_POOL;
    this.bytes = 0;
  }

  #release(bytes: number): void {
    this.#pool.release(bytes);
    this.bytes -= bytes;
  }

  /** Drops the oldest item and gives back its charge; false when empty. */
  evictOldest(): boolean {
    if (this.#size === 0) return false;
    const i = this.#start;
    this.#release(this.#cost[i]!);
    this.#payload[i] = undefined;
    this.#start = (i + 1) % this.#seq.length;
    this.#size--;
    return true;
  }

  /**
   * Tells `count` of the retained byte payloads kept in part of a larger
   * buffer (a slab of Exit bodies: see _slab-ledger.ts), with their charges:
   * once for each run of consecutive payloads in one buffer. Runs are kept
   * from the last count: only the items pushed since, and the oldest run if
   * part of it was evicted, are walked (_slab-runs.ts).
   */
  countSlabs(count: SlabCount, sizes: SlabSizes): void {
    const runs = this.#runs, oldest = this.#pushed - this.#size;
    if (runs.walked < 0) return void this.#walk(oldest, this.#pushed, (buffer, covers) => count(buffer, covers, sizes));
    const end = runs.dropBefore(oldest);
    if (end !== undefined) {
      let covers = 0;
      this.#walk(oldest, end, (_, c) => (covers = c)); // the oldest run's items, one buffer
      runs.recount(covers);
    }
    this.#walk(Math.max(oldest, runs.walked), this.#pushed, (b, c, last) => runs.add(b, c, last));
    runs.walked = this.#pushed;
    runs.forEach((buffer, covers) => count(buffer, covers, sizes));
    // Items spread over many buffers make many runs: the memory they would take is not kept (a walk each count).
    if (runs.length > MAX_RUNS_BASE + (this.#size >> 3)) {
      runs.clear();
      runs.walked = -1;
    }
  }

  // The items at positions from..to (exclusive) that are byte payloads in part of a larger buffer, told to `run` a run
  // at a time: its buffer, what its items pay, and its last item's position.
  #walk(from: number, to: number, run: RunSink): void {
    const cpus = this.#cpu, lengths = this.#length, payloads = this.#payload, costs = this.#cost, n = this.#seq.length;
    let covers = 0, current: ArrayBufferLike | undefined, last = 0;
    for (
      let p = from, i = (this.#start + from - (this.#pushed - this.#size)) % n;
      p < to;
      p++, i = i + 1 === n ? 0 : i + 1
    ) {
      const length = lengths[i]!;
      if (length === VIEW_NONE || cpus[i] === LOSS_SLOT) continue;
      const buffer = payloads[i] as ArrayBufferLike;
      if (length >= buffer.byteLength) continue;
      if (buffer !== current) {
        if (current !== undefined) run(current, covers, last);
        current = buffer;
        covers = 0;
      }
      covers += costs[i]!;
      last = p;
    }
    if (current !== undefined) run(current, covers, last);
  }

  /** What evicting everything would give back (the ring's slots stay). */
  get droppable(): number {
    return this.bytes - this.#seq.length * RETAINED_SLOT_BYTES;
  }

  /** Evicts oldest items until they gave back `bytes`, or nothing is left; returns the bytes given back. */
  dropBytes(bytes: number): number {
    const before = this.bytes;
    while (before - this.bytes < bytes && this.evictOldest());
    return before - this.bytes;
  }

  /**
   * Evicts oldest items until `bytes` more may be claimed from the budget
   * (BudgetPool.canClaim); with none left and still no room, gives up the
   * ring's slots too (it grows again as it retains). Returns the bytes given
   * back. A ring already given up asks the budget nothing: it has nothing to
   * give (a listener over its share asks at each exit it drops).
   */
  shed(bytes: number): number {
    if (this.#seq.length === 0) return 0;
    const before = this.bytes;
    while (!this.#pool.canClaim(bytes) && this.evictOldest());
    if (this.#seq.length > 0 && !this.#pool.canClaim(bytes)) this.clear();
    return before - this.bytes;
  }

  /** Drops everything and the ring itself, giving back every charge. */
  clear(): void {
    while (this.evictOldest());
    this.#runs.clear();
    this.#runs.walked = 0; // kept again
    this.#release(this.#seq.length * RETAINED_SLOT_BYTES);
    this.#seq = new Float64Array(0);
    this.#cpu = new Int32Array(0);
    this.#cost = new Int32Array(0);
    this.#offset = new Int32Array(0);
    this.#length = new Int32Array(0);
    this.#payload = [];
    this.#start = 0;
  }

  /** Up to `max` items covering seqs after `seq`, oldest first (a loss marker straddling it is trimmed). */
  after(seq: number, max = Infinity): (RetainedExit<P> | QueuedLoss)[] {
    const out: (RetainedExit<P> | QueuedLoss)[] = [];
    for (let k = this.#firstAfter(seq); k < this.#size && out.length < max; k++) {
      const item = this.#item((this.#start + k) % this.#seq.length);
      out.push(item.kind === "lost" && item.first <= seq ? { ...item, first: seq + 1 } : item);
    }
    return out;
  }

  // The place (0: the oldest) of the first item covering a seq after `seq`,
  // by bisection: items are kept in seq order, and a replay asks once per
  // batch of a ring that may hold a million.
  #firstAfter(seq: number): number {
    return firstNotBefore(this.#size, (k) => {
      const i = (this.#start + k) % this.#seq.length;
      return (this.#cpu[i] === LOSS_SLOT ? (this.#payload[i] as QueuedLoss).last : this.#seq[i]!) <= seq;
    });
  }

  #item(i: number): RetainedExit<P> | QueuedLoss {
    if (this.#cpu[i] === LOSS_SLOT) return this.#payload[i] as QueuedLoss;
    const length = this.#length[i]!;
    const payload = length === VIEW_NONE
      ? this.#payload[i] as P
      : new Uint8Array(this.#payload[i] as ArrayBufferLike, this.#offset[i], length) as P;
    return { kind: "retained", seq: this.#seq[i]!, cpu: this.#cpu[i]!, payload };
  }

  // Doubles the ring (up to capacity) if the budget has room for the new
  // slots; false if it cannot. The payload array grows as slots
  // are first written (in order: the ring is linear while it grows), so they
  // stay packed.
  #grow(): boolean {
    const old = this.#seq.length;
    const n = Math.min(this.capacity, Math.max(16, old * 2));
    // Through the owner's fair share, as its items: a reader that registers once the budget is full keeps
    // something to resume from. Its queue needing that room gives up the ring too (shed).
    if (n === old || !this.#pool.claim((n - old) * RETAINED_SLOT_BYTES)) return false;
    this.bytes += (n - old) * RETAINED_SLOT_BYTES;
    if (this.#start !== 0) this.#linearize();
    this.#seq = grown(new Float64Array(n), this.#seq);
    this.#cpu = grown(new Int32Array(n), this.#cpu);
    this.#cost = grown(new Int32Array(n), this.#cost);
    this.#offset = grown(new Int32Array(n), this.#offset);
    this.#length = grown(new Int32Array(n), this.#length);
    return true;
  }

  // Rotates the ring so the oldest item is in slot 0 (after evictions from a ring that has not wrapped).
  #linearize(): void {
    const k = this.#start;
    const rotate = <T extends Float64Array | Int32Array>(a: T): T => {
      const out = a.slice() as T;
      out.set(a.subarray(k));
      out.set(a.subarray(0, k), a.length - k);
      return out;
    };
    this.#seq = rotate(this.#seq);
    this.#cpu = rotate(this.#cpu);
    this.#cost = rotate(this.#cost);
    this.#offset = rotate(this.#offset);
    this.#length = rotate(this.#length);
    this.#payload = [...this.#payload.slice(k), ...this.#payload.slice(0, k)];
    this.#start = 0;
  }
}

function grown<T extends Float64Array | Int32Array>(into: T, from: T): T {
  into.set(from);
  return into;
}
