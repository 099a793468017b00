/**
 * The runs of a ring's byte payloads kept in part of a larger buffer (a slab
 * of Exit bodies), oldest first, by the position each item had in the order
 * items were pushed: each run a buffer, one past its last item's position,
 * and what its items pay of it. A ring keeps them from one count to the next and walks
 * only what changed: the items pushed since, and the oldest run if the ring
 * evicted part of it. Walking 100 full rings of 12,000 exits every second
 * kept an idle server at 18-34 ms of CPU a second (12-22 with the runs
 * kept); keeping runs as each item came and went cost every listener
 * 50-70 ns a record (in-process, 100 rings), more than a walk a second saves
 * past ~1,500 records a second. A ring whose items make more runs than it
 * keeps (one per 8 items) is walked at each count instead (retention.ts).
 */

/** Runs kept past one per 8 items: past this many more, the ring is walked at each count instead. */
export const MAX_RUNS_BASE = 8;

/** Told of a run of payloads in one buffer: the buffer, what they pay, the last one's position. */
export type RunSink = (buffer: ArrayBufferLike, covers: number, last: number) => void;

/** Runs by buffer, oldest first. */
export class SlabRuns {
  #buffers: (ArrayBufferLike | undefined)[] = [];
  /** One past the position of each run's last item. */
  #ends: number[] = [];
  #covers: number[] = [];
  /** The oldest run still kept (the arrays are compacted as it moves on). */
  #head = 0;
  /** Positions before this one have been walked. */
  walked = 0;
  /** The ring's oldest position at the last dropBefore(): the oldest run was counted from there. */
  #oldest = 0;

  /** Runs kept now. */
  get length(): number {
    return this.#buffers.length - this.#head;
  }

  /** Items up to position `last` (past every run's), in `buffer`, paying `covers` of it. */
  add(buffer: ArrayBufferLike, covers: number, last: number): void {
    const newest = this.#buffers.length - 1;
    if (newest >= this.#head && this.#buffers[newest] === buffer) {
      this.#covers[newest]! += covers;
      this.#ends[newest] = last + 1;
      return;
    }
    this.#buffers.push(buffer);
    this.#ends.push(last + 1);
    this.#covers.push(covers);
  }

  /**
   * Forgets the items before position `oldest` (the ring let them go): runs
   * that end before it go; undefined, or the oldest run's end when the ring
   * let go of items since the last call and that run may have lost some: it
   * must be counted again from `oldest` (`recount`).
   */
  dropBefore(oldest: number): number | undefined {
    const moved = oldest > this.#oldest;
    this.#oldest = oldest;
    let h = this.#head;
    const n = this.#buffers.length;
    while (h < n && this.#ends[h]! <= oldest) this.#buffers[h++] = undefined;
    this.#head = h;
    if (h === n) this.clear();
    else if (h >= 64 && 2 * h >= n) this.#compact();
    return moved && this.#head < this.#buffers.length ? this.#ends[this.#head] : undefined;
  }

  /** What the oldest run's items pay now (its items from the ring's oldest position on). */
  recount(covers: number): void {
    this.#covers[this.#head] = covers;
  }

  /** Calls `fn` with each run that pays anything, oldest first. */
  forEach(fn: (buffer: ArrayBufferLike, covers: number) => void): void {
    for (let i = this.#head; i < this.#buffers.length; i++) {
      if (this.#covers[i]! > 0) fn(this.#buffers[i]!, this.#covers[i]!);
    }
  }

  /** Forgets every run. */
  clear(): void {
    this.#buffers = [];
    this.#ends = [];
    this.#covers = [];
    this.#head = 0;
  }

  #compact(): void {
    const h = this.#head;
    this.#buffers = this.#buffers.slice(h);
    this.#ends = this.#ends.slice(h);
    this.#covers = this.#covers.slice(h);
    this.#head = 0;
  }
}
