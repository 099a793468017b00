/**
 * How sure a latency row's ratio is: a paired, two-level block bootstrap of
 * one quantile's ratio between two servers measured in the same rounds.
 *
 * Why not the median of the rounds' ratios alone: a round's p99 rests on its
 * slowest 1% (200 events of a 2 s window at 10,000/s), and the host's steal
 * and scheduling come in bursts, so two identical servers read 0.7-2.7x apart
 * in single rounds and their rounds' median up to 1.55x. Four or six such
 * ratios cannot say whether 1.2x is met. The bootstrap uses every event:
 * each round's window is cut into blocks of consecutive events (a 100 ms
 * turn's worth: latencies inside a burst are not independent, blocks of them
 * nearly are). A draw takes the rounds again with replacement, and inside
 * each round taken its blocks with replacement (two levels: a round holds
 * what does not change inside it, such as the minute's host and the
 * processes' placement, and a draw of blocks alone would count that as
 * certain); block k of one server goes with block k of the other (in
 * interleaved rounds the same seconds of the host). The spread of the ratio
 * over the draws is the interval; the control row (two identical servers)
 * shows whether it is honest: its interval should hold 1.0.
 */

/** A window's latencies cut into `count` blocks of consecutive events, each sorted ascending. */
export function cutBlocks(latencies: readonly number[], count: number): Float64Array[] {
  if (!(Number.isInteger(count) && count >= 1)) throw new RangeError(`block count must be an integer >= 1: ${count}`);
  const out: Float64Array[] = [];
  for (let k = 0; k < count; k++) {
    const from = Math.floor((k * latencies.length) / count), to = Math.floor(((k + 1) * latencies.length) / count);
    out.push(Float64Array.from(latencies.slice(from, to)).sort());
  }
  return out;
}

/** Block k of `a` and block k of `b` as one block (two servers' events of the same turns, as one baseline). */
export function mergeBlocks(a: readonly Float64Array[], b: readonly Float64Array[]): Float64Array[] {
  if (a.length !== b.length) throw new RangeError(`merged blocks must pair up: ${a.length} and ${b.length}`);
  return a.map((x, k) => {
    const out = new Float64Array(x.length + b[k]!.length);
    out.set(x), out.set(b[k]!, x.length);
    return out.sort();
  });
}

/** The quantile `q` of sorted values, as the bench's tables take it: sorted[floor(q * n)], the last at most. */
export function quantileOf(sorted: ArrayLike<number>, q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

// Count of values <= v in an ascending block.
function countAtMost(block: Float64Array, v: number): number {
  let lo = 0, hi = block.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (block[mid]! <= v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The quantile `q` of the union of `chosen` (a block may be chosen more than
 * once), found without merging them: a binary search over `values`, every
 * value the blocks hold in ascending order, for the smallest with enough of
 * the union at or under it. About 17 x blocks x log(block) steps, where a
 * sort of the union would touch every event on every draw.
 */
export function unionQuantile(values: Float64Array, chosen: readonly Float64Array[], q: number): number {
  let n = 0;
  for (const b of chosen) n += b.length;
  if (n === 0) return NaN;
  const need = Math.min(n - 1, Math.floor(q * n)) + 1;
  let lo = 0, hi = values.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    let at = 0;
    for (const b of chosen) at += countAtMost(b, values[mid]!);
    if (at >= need) hi = mid;
    else lo = mid + 1;
  }
  return values[lo]!;
}

/** A ratio and its bootstrap interval. */
export interface RatioInterval {
  /** The quantile of every event of `a` over that of every event of `b`. */
  readonly estimate: number;
  /** The interval's ends (for level 0.95: the draws' 2.5th and 97.5th percentiles). */
  readonly low: number;
  readonly high: number;
}

/** How the bootstrap draws. */
export interface BootstrapOptions {
  /** The quantile compared (0.99 for p99). */
  readonly q: number;
  /** Draws (default 2,000). */
  readonly draws?: number;
  /** The interval's coverage (default 0.95). */
  readonly level?: number;
  /** Seed of the draws (default 1: a table is the same when re-printed from the same events). */
  readonly seed?: number;
}

/** mulberry32: a small seeded generator in [0, 1), so a table's intervals do not change between prints of the same data. */
export function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function sortedValues(rounds: readonly (readonly Float64Array[])[]): Float64Array {
  const all = rounds.flat();
  const out = new Float64Array(all.reduce((a, b) => a + b.length, 0));
  let o = 0;
  for (const b of all) (out.set(b, o), (o += b.length));
  return out.sort();
}

function checkPaired(a: readonly (readonly Float64Array[])[], b: readonly (readonly Float64Array[])[]): void {
  if (a.length !== b.length || a.some((r, i) => r.length !== b[i]!.length) || a.length === 0) {
    throw new RangeError("the two servers' rounds must be cut into the same number of blocks, and be at least one");
  }
}

/**
 * quantile(a) / quantile(b) over every event, and its interval from `draws`
 * paired two-level draws (rounds, then blocks inside them); `a` and `b` are
 * rounds of blocks (cutBlocks), round i block k of `a` measured beside round
 * i block k of `b`.
 */
export function ratioInterval(
  a: readonly (readonly Float64Array[])[],
  b: readonly (readonly Float64Array[])[],
  o: BootstrapOptions,
): RatioInterval {
  checkPaired(a, b);
  const [va, vb] = [sortedValues(a), sortedValues(b)];
  const estimate = quantileOf(va, o.q) / quantileOf(vb, o.q);
  const random = seeded(o.seed ?? 1), draws = o.draws ?? 2000, level = o.level ?? 0.95;
  const ratios = new Float64Array(draws);
  const pickA: Float64Array[] = [], pickB: Float64Array[] = [];
  const pick = (n: number) => Math.floor(random() * n);
  for (let d = 0; d < draws; d++) {
    pickA.length = pickB.length = 0;
    for (let r = 0; r < a.length; r++) {
      const i = pick(a.length), round = a[i]!;
      for (let k = 0; k < round.length; k++) {
        const j = pick(round.length);
        pickA.push(round[j]!), pickB.push(b[i]![j]!);
      }
    }
    ratios[d] = unionQuantile(va, pickA, o.q) / unionQuantile(vb, pickB, o.q);
  }
  ratios.sort();
  const tail = (1 - level) / 2;
  return { estimate, low: quantileOf(ratios, tail), high: quantileOf(ratios, 1 - tail) };
}
