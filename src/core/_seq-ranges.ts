import { firstNotBefore } from "./_bisect.ts";

/**
 * A set of seqs kept as sorted, disjoint, non-adjacent ranges in one flat
 * array (first, last, first, last, ...). A listener keeps the seqs it has
 * counted as RETENTION loss in one, so that a seq is counted once however
 * often clients resume over it. A replay made a batch at a time can add a
 * range per batch (exits evicted while it runs), so an addition finds its
 * place by bisection rather than walking and sorting every range.
 */
export class SeqRanges {
  #flat: number[] = [];

  /** Ranges held. */
  get size(): number {
    return this.#flat.length / 2;
  }

  /** Adds first..last; returns how many of its seqs were not in the set before. */
  add(first: number, last: number): number {
    const flat = this.#flat;
    let fresh = last - first + 1;
    // The first range that overlaps or touches first..last, or is after it.
    const i = this.#firstEndingFrom(first - 1);
    let j = i;
    for (; j < flat.length / 2 && flat[2 * j]! <= last + 1; j++) {
      const a = flat[2 * j]!, b = flat[2 * j + 1]!;
      fresh -= Math.max(0, Math.min(b, last) - Math.max(a, first) + 1);
      first = Math.min(first, a);
      last = Math.max(last, b);
    }
    flat.splice(2 * i, 2 * (j - i), first, last);
    return fresh;
  }

  // The index of the first range whose last seq is >= seq (size when none).
  #firstEndingFrom(seq: number): number {
    return firstNotBefore(this.size, (k) => this.#flat[2 * k + 1]! < seq);
  }
}
