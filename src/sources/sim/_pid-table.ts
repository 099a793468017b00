/**
 * The sim's live threads by pid: an open-addressing hash table (linear
 * probing, deletion by backward shift) over typed arrays, growing by
 * doubling past half full. Every exit removes a pid and every fork adds one:
 * a Map's table, churned at that rate, was a quarter of the sim's time per
 * exit (its rehashes and its hole-skipping lookups) and garbage besides.
 */

const EMPTY = 0; // pid 0 is the idle task: never a simulated thread

/** Values of type T by pid (a positive integer below 2^31). */
export class PidTable<T> {
  #keys = new Int32Array(64);
  #values: (T | undefined)[] = new Array<T | undefined>(64).fill(undefined);
  /** 32 - log2(capacity): a slot is the top bits of the hash. */
  #shift = 26;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  get(pid: number): T | undefined {
    const i = this.#find(pid);
    return i < 0 ? undefined : this.#values[i];
  }

  has(pid: number): boolean {
    return this.#find(pid) >= 0;
  }

  /** Adds or replaces `pid`'s value. */
  set(pid: number, value: T): void {
    if (!Number.isInteger(pid) || pid <= 0 || pid > 0x7fffffff) throw new RangeError(`pid ${pid} is not 1..2^31-1`);
    if (2 * (this.#size + 1) > this.#keys.length) this.#grow();
    const mask = this.#keys.length - 1;
    let i = this.#slot(pid);
    while (this.#keys[i] !== EMPTY && this.#keys[i] !== pid) i = (i + 1) & mask;
    if (this.#keys[i] === EMPTY) this.#size++;
    this.#keys[i] = pid;
    this.#values[i] = value;
  }

  delete(pid: number): boolean {
    let i = this.#find(pid);
    if (i < 0) return false;
    const keys = this.#keys, values = this.#values, mask = keys.length - 1;
    // Backward shift: later entries of the probe run move up into the gap, so lookups never need tombstones.
    for (let j = (i + 1) & mask; keys[j] !== EMPTY; j = (j + 1) & mask) {
      const home = this.#slot(keys[j]!);
      if (((j - home) & mask) >= ((j - i) & mask)) {
        keys[i] = keys[j]!;
        values[i] = values[j];
        i = j;
      }
    }
    keys[i] = EMPTY;
    values[i] = undefined;
    this.#size--;
    return true;
  }

  /** The pids held, in no particular order. */
  keys(): number[] {
    return [...this.#keys].filter((k) => k !== EMPTY);
  }

  // -1 when absent; pid 0 (the empty slots' mark) is never held.
  #find(pid: number): number {
    if (pid === EMPTY) return -1;
    const keys = this.#keys, mask = keys.length - 1;
    for (let i = this.#slot(pid);; i = (i + 1) & mask) {
      const k = keys[i]!;
      if (k === pid) return i;
      if (k === EMPTY) return -1;
    }
  }

  // Pids are handed out in sequence: a multiplicative (Fibonacci) hash spreads neighbours over the table.
  #slot(pid: number): number {
    return Math.imul(pid, 0x9e3779b1) >>> this.#shift;
  }

  #grow(): void {
    const keys = this.#keys, values = this.#values;
    this.#keys = new Int32Array(keys.length * 2);
    this.#values = new Array<T | undefined>(keys.length * 2).fill(undefined);
    this.#shift--;
    this.#size = 0;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== EMPTY) this.set(keys[i]!, values[i]!);
  }
}
