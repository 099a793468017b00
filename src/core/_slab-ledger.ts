/**
 * Charging listeners for the slabs their items keep alive. The sources put
 * many records' stats into one slab (kernel/stats-vector.ts), and the server
 * encodes many Exit bodies into one (rpc/fast-binary/batch.ts); a slab lives
 * while anything in it is held. A listener is charged per item, a share of
 * the slab: items held close together pay for their slab between them, but a
 * few held apart keep the whole slab alive for the price of their shares.
 * Measured before this ledger: a never-read listener whose filter matched
 * runs of 20 exits in 100 held 1.8x what it was charged, 2.3x with a reader
 * encoding every Exit body; a listener that read them, with that reader,
 * retained 2.6x; never-read records whose bodies another stream encoded one
 * to a slab, 23x.
 *
 * Once a second the ledger asks every listener what it holds in sealed slabs
 * (its queue, its streams' batches in flight, its retention; for a record,
 * its stats slab and its encoded body's; a slab still taking items is alive
 * for the source anyway), adds up what their items pay for of each slab,
 * and charges each slab's unpaid rest to its holders in proportion to what
 * they pay: a slab held by many listeners is charged once between them, and
 * when all but one let go of it, the last is charged the rest. Counting
 * then, not as each item comes and goes, costs nothing on a record's path
 * (told of every item, the ledger took 90 ns per record per listener; a count
 * of everything held, bounded by the memory budget, takes a few ns an item);
 * the charge lags what is held by up to a second, either way. A retention
 * ring tells its runs from what it kept of its last count, walking only what
 * was pushed since (_slab-runs.ts); a queue is walked whole, since a queued
 * record gains a slab when a stream first encodes its body.
 */

/** What a slab costs, and whether it is sealed. */
export interface SlabSizes {
  /** Bytes `slab` keeps alive in all. */
  bytesOf(slab: object): number;
  /** Whether `slab` takes no more items. */
  sealed(slab: object): boolean;
}

/** Told of a shared slab an item keeps alive: the slab, what the item's charge pays of it, and the slab's sizes. */
export type SlabCount = (slab: object, covers: number, sizes: SlabSizes) => void;

/** How items of type T share slabs. */
export interface SlabTerms<T> {
  /** Tells `count` of each shared slab `item` keeps alive (a record: its stats vectors', its Exit body's). */
  eachSlab(item: T, count: SlabCount): void;
}

/** Something that holds items in slabs (a listener): the ledger asks it what, and sets what it is charged. */
export interface SlabHolding {
  /** Tells `count` of each item it holds in a shared slab. */
  countSlabs(count: SlabCount): void;
  /** Charges it `bytes` in all for slabs, in place of what it was charged before (even past the budget: it is held). */
  chargeSlabs(bytes: number): void;
}

/** One sealed slab: what it keeps alive, and what its holders' items pay for. */
interface Tally {
  readonly bytes: number;
  covered: number;
}

/** The slabs a registry's listeners hold, counted once a second. */
export class SlabLedger {
  /** Counts what `holdings` hold and charges each its share of every sealed slab's unpaid rest. */
  settle(holdings: Iterable<SlabHolding>): void {
    const tallies = new Map<object, Tally | null>(); // null: a slab still taking items
    const shares: [SlabHolding, Map<Tally, number>][] = [];
    for (const h of holdings) shares.push([h, this.#count(h, tallies)]);
    for (const [h, mine] of shares) {
      let want = 0;
      for (const [t, covers] of mine) {
        if (t.bytes > t.covered) want += Math.ceil(((t.bytes - t.covered) * covers) / t.covered);
      }
      h.chargeSlabs(want);
    }
  }

  // What `h`'s items pay for of each sealed slab, added to the slabs' tallies too. Items come in runs of a few
  // slabs at a time (a record's stats slab and its body's; retained bodies encoded in turns by two streams):
  // each of the last RUNS slabs told of sums its run, looked up once the run ends.
  #count(h: SlabHolding, tallies: Map<object, Tally | null>): Map<Tally, number> {
    const mine = new Map<Tally, number>();
    const keys: (object | undefined)[] = new Array(RUNS).fill(undefined), runs: number[] = new Array(RUNS).fill(0);
    const sizesOf: (SlabSizes | undefined)[] = new Array(RUNS).fill(undefined);
    let next = 0;
    const flush = (i: number) => {
      const tally = runs[i]! > 0 ? tallyOf(tallies, keys[i]!, sizesOf[i]!) : null;
      if (tally !== null) {
        tally.covered += runs[i]!;
        mine.set(tally, (mine.get(tally) ?? 0) + runs[i]!);
      }
      runs[i] = 0;
    };
    h.countSlabs((slab, covers, sizes) => {
      // The search unrolled for RUNS = 4: a loop took 24-28 ms per million alternating items against 21-23.
      let i = keys[0] === slab ? 0 : keys[1] === slab ? 1 : keys[2] === slab ? 2 : keys[3] === slab ? 3 : -1;
      if (i < 0) {
        i = next;
        next = (next + 1) % RUNS;
        flush(i);
        keys[i] = slab;
        sizesOf[i] = sizes;
      }
      runs[i]! += covers;
    });
    for (let i = 0; i < RUNS; i++) flush(i);
    return mine;
  }
}

/** Slabs whose runs are summed at once, per holder (the search in #count is unrolled for 4). */
const RUNS = 4;

function tallyOf(tallies: Map<object, Tally | null>, slab: object, sizes: SlabSizes): Tally | null {
  let t = tallies.get(slab);
  if (t === undefined) tallies.set(slab, t = sizes.sealed(slab) ? { bytes: sizes.bytesOf(slab), covered: 0 } : null);
  return t;
}
