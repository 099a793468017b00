/**
 * Max-min shares of a budget (water-filling): what an owner may borrow up
 * to (budget.ts). An owner's level is the L at which the others, each
 * counted at what it holds but at most L, and the owner at L, fill the
 * budget: sum(min(held, L)) + L = budget. It is never less than the even
 * split (the budget over the owners), and more when some owners hold less
 * than that: an owner holding only a listener's fixed cost leaves the rest
 * of its even share to the others.
 */

/** What the owners held when counted: ascending, with prefix sums. */
export class FairLevels {
  /** Holdings, ascending. */
  readonly #held: Float64Array;
  /** #sums[k]: the k smallest holdings together. */
  readonly #sums: Float64Array;
  readonly #budget: number;

  /** `held`: each owner's bytes (sorted here); `budget`: the bytes shared out. */
  constructor(held: readonly number[], budget: number) {
    this.#held = Float64Array.from(held).sort();
    this.#sums = new Float64Array(this.#held.length + 1);
    for (let i = 0; i < this.#held.length; i++) this.#sums[i + 1] = this.#sums[i]! + this.#held[i]!;
    this.#budget = budget;
  }

  /** Owners counted. */
  get size(): number {
    return this.#held.length;
  }

  /**
   * The fair share of an owner counted holding `own` (undefined: an owner
   * not counted, judged with itself among the owners), whole bytes: the
   * level with every other owner at what it held.
   */
  levelOf(own: number | undefined): number {
    const skip = own === undefined ? -1 : this.#indexOf(own);
    const others = this.#held.length - (skip < 0 ? 0 : 1);
    // The first k for which the k-th smallest other holds at least the level the k below it leave: the level is then
    // the rest shared among it, the others above it and the owner. `(others - k) * (next - prev) >= 0` between
    // successive k, so the test is monotone and a bisection finds it.
    let lo = 0, hi = others;
    while (lo < hi) {
      const k = (lo + hi) >>> 1;
      if (this.#other(k, skip) * (others - k + 1) >= this.#budget - this.#sumBelow(k, skip)) hi = k;
      else lo = k + 1;
    }
    return Math.floor((this.#budget - this.#sumBelow(lo, skip)) / (others - lo + 1));
  }

  // Where a holding of `own` is (any one of equal holdings: they are interchangeable).
  #indexOf(own: number): number {
    let lo = 0, hi = this.#held.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#held[mid]! < own) lo = mid + 1;
      else hi = mid;
    }
    return this.#held[lo] === own ? lo : -1;
  }

  // The k-th smallest holding (0-based) with the one at `skip` left out.
  #other(k: number, skip: number): number {
    return this.#held[skip >= 0 && k >= skip ? k + 1 : k]!;
  }

  // The k smallest holdings together, the one at `skip` left out.
  #sumBelow(k: number, skip: number): number {
    return skip < 0 || k <= skip ? this.#sums[k]! : this.#sums[k + 1]! - this.#held[skip]!;
  }
}
