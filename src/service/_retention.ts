/**
 * What a listener keeps after handing events to a stream, so a client that
 * reconnects can resume: the last `capacity` items (exits and loss markers),
 * oldest first.
 */
import type { QueueItem } from "./event-queue.ts";

/** The last seq an item covers. */
export function lastSeqOf(item: QueueItem): number {
  return item.kind === "exit" ? item.seq : item.last;
}

/** A ring of handed-out items that grows on demand up to its capacity (idle listeners cost nothing). */
export class Retention {
  readonly capacity: number;
  readonly #ring: QueueItem[] = [];
  #start = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  push(item: QueueItem): void {
    if (this.#ring.length < this.capacity) {
      this.#ring.push(item);
      return;
    }
    this.#ring[this.#start] = item;
    this.#start = (this.#start + 1) % this.capacity;
  }

  /** Items covering seqs after `seq`, oldest first (a loss marker straddling it is trimmed). */
  after(seq: number): QueueItem[] {
    const out: QueueItem[] = [];
    const n = this.#ring.length;
    for (let i = 0; i < n; i++) {
      const item = this.#ring[(this.#start + i) % n]!;
      if (lastSeqOf(item) <= seq) continue;
      out.push(item.kind === "lost" && item.first <= seq ? { ...item, first: seq + 1 } : item);
    }
    return out;
  }
}
