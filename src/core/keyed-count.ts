/**
 * A count per key and in all, each unit held until its release function is
 * called (once: a second call does nothing, so a release that more than one
 * ending can reach, say a stream's end and its connection's close, is safe).
 * Admission counts its streams and its calls under way with it.
 */
export class KeyedCount {
  readonly #perKey = new Map<string, number>();
  #total = 0;

  /** Units held now, all keys. */
  get total(): number {
    return this.#total;
  }

  /** Units `key` holds now. */
  of(key: string): number {
    return this.#perKey.get(key) ?? 0;
  }

  /** Counts one unit of `key` until the returned function is called. */
  hold(key: string): () => void {
    this.#perKey.set(key, this.of(key) + 1);
    this.#total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#total--;
      const n = this.of(key) - 1;
      if (n <= 0) this.#perKey.delete(key);
      else this.#perKey.set(key, n);
    };
  }
}
