/**
 * What a listener keeps after handing events to a stream, so a client that
 * reconnects can resume: the last `capacity` items (exits and loss markers),
 * oldest first.
 *
 * Exits are kept as their encoded Exit message (the bytes every binary
 * stream sends, encoded once per record into shared slabs) plus seq and CPU
 * in typed arrays, not as the record: a retained event then costs no object
 * on the JS heap. Retaining records (8,192 per listener by default) made
 * nearly every record survive V8's young-generation collections, whose pauses
 * (8-12 ms every ~200 ms at 10k events/s) were the stream's latency tail.
 */
import type { QueuedLoss, QueueItem } from "./event-queue.ts";
import { exitBody } from "../rpc/fast-binary/batch.ts";

/** An exit as retained: its Exit message already encoded (pid, tgid, both TaskStats). */
export interface EncodedExit {
  readonly kind: "encoded";
  readonly seq: number;
  readonly cpu: number;
  readonly exit: Uint8Array;
}

/** What a stream sends: queued items, or retained ones on a resume. */
export type StreamItem = QueueItem | EncodedExit;

/** The last seq an item covers. */
export function lastSeqOf(item: StreamItem): number {
  return item.kind === "lost" ? item.last : item.seq;
}

/** The first seq an item covers. */
export function firstSeqOf(item: StreamItem): number {
  return item.kind === "lost" ? item.first : item.seq;
}

/** A ring of handed-out items that grows on demand up to its capacity (idle listeners cost nothing). */
export class Retention {
  readonly capacity: number;
  #size = 0;
  #start = 0;
  #seq = new Float64Array(0);
  #cpu = new Int32Array(0);
  #offset = new Int32Array(0);
  #length = new Int32Array(0);
  /** Each exit's slab (shared, off-heap); undefined for a loss marker. */
  #slab: (ArrayBufferLike | undefined)[] = [];
  /** Loss markers by slot; undefined for an exit. */
  #loss: (QueuedLoss | undefined)[] = [];

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  push(item: QueueItem): void {
    const i = this.#slot();
    if (item.kind === "lost") {
      this.#slab[i] = undefined;
      this.#loss[i] = item;
      return;
    }
    const body = exitBody(item.record);
    this.#seq[i] = item.seq;
    this.#cpu[i] = item.record.cpu;
    this.#slab[i] = body.buffer;
    this.#offset[i] = body.byteOffset;
    this.#length[i] = body.byteLength;
    this.#loss[i] = undefined;
  }

  /** Items covering seqs after `seq`, oldest first (a loss marker straddling it is trimmed). */
  after(seq: number): StreamItem[] {
    const out: StreamItem[] = [];
    for (let k = 0; k < this.#size; k++) {
      const item = this.#item((this.#start + k) % this.#size);
      if (lastSeqOf(item) <= seq) continue;
      out.push(item.kind === "lost" && item.first <= seq ? { ...item, first: seq + 1 } : item);
    }
    return out;
  }

  #item(i: number): StreamItem {
    const loss = this.#loss[i];
    if (loss !== undefined) return loss;
    return { kind: "encoded", seq: this.#seq[i]!, cpu: this.#cpu[i]!, exit: new Uint8Array(this.#slab[i]!, this.#offset[i]!, this.#length[i]!) };
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
    const grown = <T extends Float64Array | Int32Array>(old: T, make: (n: number) => T): T => {
      const a = make(n);
      a.set(old);
      return a;
    };
    this.#seq = grown(this.#seq, (m) => new Float64Array(m));
    this.#cpu = grown(this.#cpu, (m) => new Int32Array(m));
    this.#offset = grown(this.#offset, (m) => new Int32Array(m));
    this.#length = grown(this.#length, (m) => new Int32Array(m));
  }
}
