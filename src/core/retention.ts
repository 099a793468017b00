/**
 * What a listener keeps after handing events to a stream, so a client that
 * reconnects can resume: the last `capacity` items (exits and loss markers),
 * oldest first.
 *
 * An exit is kept as an opaque payload the owner computes from the record
 * (`retain`), plus its seq and CPU in typed arrays, never as the record
 * itself: the server keeps each exit's encoded bytes, so a retained event
 * costs no JS object and records die young (retained records would survive
 * the young-generation collections, whose pauses are a stream's latency tail).
 * The core never looks inside a payload.
 */
import type { CpuRecord, QueuedLoss, QueueItem } from "./event-queue.ts";

/** A retained exit: its seq, its CPU and the payload `retain` made of its record. */
export interface RetainedExit<P> {
  readonly kind: "retained";
  readonly seq: number;
  readonly cpu: number;
  readonly payload: P;
}

/** What a stream sends: queued items, or retained ones on a resume. */
export type StreamItem<R extends CpuRecord, P> = QueueItem<R> | RetainedExit<P>;

/** The last seq an item covers. */
export function lastSeqOf(item: { kind: string; seq?: number; last?: number }): number {
  return item.kind === "lost" ? item.last! : item.seq!;
}

/** The first seq an item covers. */
export function firstSeqOf(item: { kind: string; seq?: number; first?: number }): number {
  return item.kind === "lost" ? item.first! : item.seq!;
}

/** A ring of handed-out items that grows on demand up to its capacity (idle listeners cost nothing). */
export class Retention<R extends CpuRecord, P> {
  readonly capacity: number;
  readonly #retain: (record: R) => P;
  #size = 0;
  #start = 0;
  #seq = new Float64Array(0);
  #cpu = new Int32Array(0);
  /** Each exit's payload; undefined for a loss marker. */
  #payload: (P | undefined)[] = [];
  /** Loss markers by slot; undefined for an exit. */
  #loss: (QueuedLoss | undefined)[] = [];

  constructor(capacity: number, retain: (record: R) => P) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`retention capacity must be a positive integer, got ${capacity}`);
    }
    this.capacity = capacity;
    this.#retain = retain;
  }

  /** Items retained now. */
  get size(): number {
    return this.#size;
  }

  /** Keeps `item`, dropping the oldest once full. */
  push(item: QueueItem<R>): void {
    const i = this.#slot();
    if (item.kind === "lost") {
      this.#payload[i] = undefined;
      this.#loss[i] = item;
      return;
    }
    this.#seq[i] = item.seq;
    this.#cpu[i] = item.record.cpu;
    this.#payload[i] = this.#retain(item.record);
    this.#loss[i] = undefined;
  }

  /** Items covering seqs after `seq`, oldest first (a loss marker straddling it is trimmed). */
  after(seq: number): (RetainedExit<P> | QueuedLoss)[] {
    const out: (RetainedExit<P> | QueuedLoss)[] = [];
    for (let k = 0; k < this.#size; k++) {
      const item = this.#item((this.#start + k) % this.#size);
      if (lastSeqOf(item) <= seq) continue;
      out.push(item.kind === "lost" && item.first <= seq ? { ...item, first: seq + 1 } : item);
    }
    return out;
  }

  #item(i: number): RetainedExit<P> | QueuedLoss {
    const loss = this.#loss[i];
    if (loss !== undefined) return loss;
    return { kind: "retained", seq: this.#seq[i]!, cpu: this.#cpu[i]!, payload: this.#payload[i] as P };
  }

  // The slot for the next item: the next free one while growing, else the oldest.
  #slot(): number {
    if (this.#size < this.capacity) {
      if (this.#size === this.#seq.length) this.#grow();
      return this.#size++;
    }
    const i = this.#start;
    this.#start = (this.#start + 1) % this.capacity;
    return i;
  }

  // Growth happens only before the ring first wraps, so slots are in order.
  #grow(): void {
    const n = Math.min(this.capacity, Math.max(16, this.#seq.length * 2));
    const seq = new Float64Array(n);
    seq.set(this.#seq);
    const cpu = new Int32Array(n);
    cpu.set(this.#cpu);
    this.#seq = seq;
    this.#cpu = cpu;
  }
}
