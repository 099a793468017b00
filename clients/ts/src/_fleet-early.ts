/**
 * The early seqs of every run a FleetOrder tracks: seqs yielded ahead of
 * their run's order (a durable consumer's redeliveries before the run's
 * start, the rest of a batch it started in, late events of a skipped gap),
 * remembered so that the same seq delivered again is known as a repeat.
 *
 * Anyone allowed to publish on a host's subject can make them (seqs below
 * the run's start), so they are bounded per run (its oldest go first) and
 * in all. Past the total, the hosts holding the most give theirs up first,
 * all down to one level (water-filling, as the server's memory budget
 * shares between principals): a host flooding forged seqs evicts its own,
 * and a host holding no more than an equal share of the total keeps all of
 * its. Within a host, its runs holding the most go first. A trim frees
 * 1/64 of the total at once, so a flood pays one pass over the hosts per
 * that many seqs, not per seq.
 */

/**
 * Early seqs remembered per run and in all. Each costs 28 bytes (60 with seqs past 2^31, which a forger may pick),
 * and a Map emptied by evictions keeps some of its table: a flood of 4,096 runs' forged seqs left 31 MB of heap
 * (47 MB), where without the total 4,096 runs full took 7.5 GB (16 GB).
 */
export const EARLY_DEFAULTS = { maxEarly: 65_536, maxEarlyTotal: 524_288 } as const;

/** What a run shows of itself: its host, and its early seqs (first seq -> last seq, oldest first). */
export interface EarlyRun {
  readonly label: string;
  readonly early: Map<number, number>;
}

/** A host's early seqs: how many, and its runs holding some. */
interface Host {
  n: number;
  readonly runs: Set<EarlyRun>;
}

/** The early seqs of all runs, bounded per run and in all. */
export class EarlySeqs {
  readonly #hosts = new Map<string, Host>();
  readonly #maxPerRun: number;
  readonly #maxTotal: number;
  #size = 0;

  constructor(maxPerRun: number, maxTotal: number) {
    this.#maxPerRun = maxPerRun;
    this.#maxTotal = maxTotal;
  }

  /** Early seqs remembered, in all. */
  get size(): number {
    return this.#size;
  }

  /** Remembers `first..last` of `r` as yielded. */
  add(r: EarlyRun, first: number, last: number): void {
    if (r.early.has(first)) return void r.early.set(first, last);
    // A run full gives up 1/64 of its bound at once: its oldest are at the front of its Map behind the tombstones of
    // those given up before, so one at a time made each push walk them all (50 us instead of 2 once a forger filled
    // a run with seqs below its start).
    if (r.early.size >= this.#maxPerRun) this.#shedRun(r, 1 + Math.floor(this.#maxPerRun / 64));
    r.early.set(first, last);
    const h = this.#hosts.get(r.label) ?? { n: 0, runs: new Set<EarlyRun>() };
    this.#hosts.set(r.label, h);
    h.n++;
    h.runs.add(r);
    if (++this.#size > this.#maxTotal) this.#trim();
  }

  /** Forgets the early seq of `r` starting at `first` (it is held in order now). */
  delete(r: EarlyRun, first: number): void {
    if (!r.early.delete(first)) return;
    this.#count(r, -1);
  }

  /** Forgets every early seq of `r` (the run is evicted). */
  drop(r: EarlyRun): void {
    const n = r.early.size;
    r.early.clear();
    if (n > 0) this.#count(r, -n);
  }

  #count(r: EarlyRun, by: number): void {
    this.#size += by;
    const h = this.#hosts.get(r.label);
    if (h === undefined) return;
    h.n += by;
    if (r.early.size === 0) h.runs.delete(r);
    if (h.n <= 0) this.#hosts.delete(r.label);
  }

  // Frees 1/64 of the total (at least what it is over by) from the hosts holding the most.
  #trim(): void {
    const need = this.#size - (this.#maxTotal - Math.floor(this.#maxTotal / 64));
    const level = waterLevel([...this.#hosts.values()].map((h) => h.n), need);
    for (const h of [...this.#hosts.values()]) {
      if (h.n <= level) continue;
      const runs = [...h.runs];
      const runLevel = waterLevel(runs.map((r) => r.early.size), h.n - level);
      for (const r of runs) if (r.early.size > runLevel) this.#shedRun(r, r.early.size - runLevel);
    }
  }

  // Forgets the `n` oldest early seqs of `r`.
  #shedRun(r: EarlyRun, n: number): void {
    let shed = 0;
    for (const first of r.early.keys()) {
      if (shed === n) break;
      r.early.delete(first);
      shed++;
    }
    this.#count(r, -shed);
  }
}

/**
 * The highest level (>= 0) such that cutting every count above it down to it frees at least `need`: the hosts
 * holding the most give up theirs first, and none is cut below another that is cut.
 */
export function waterLevel(counts: readonly number[], need: number): number {
  const sorted = [...counts].sort((a, b) => b - a);
  let sum = 0;
  for (let k = 1; k <= sorted.length; k++) {
    sum += sorted[k - 1] as number;
    const level = Math.floor((sum - need) / k);
    if (level >= (sorted[k] ?? 0)) return Math.max(0, level);
  }
  return 0;
}
