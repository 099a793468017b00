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
 * retained 2.6x.
 *
 * Once a second the ledger asks every listener what it holds in sealed slabs
 * (its queue, the batch in flight, its retention; a slab still taking items
 * is alive for the source anyway), adds up what their items pay for of each
 * slab, and charges each slab's unpaid rest to its holders in proportion to
 * what they pay: a slab held by many listeners is charged once between them,
 * and when all but one let go of it, the last is charged the rest. Counting
 * then, not as each item comes and goes, costs nothing on a record's path
 * (told of every item, the ledger took 90 ns per record per listener; a count
 * of everything held, bounded by the memory budget, takes a few ns an item);
 * the charge lags what is held by up to a second, either way.
 */

/** What a slab costs, and whether it is sealed. */
export interface SlabSizes {
  /** Bytes `slab` keeps alive in all. */
  bytesOf(slab: object): number;
  /** Whether `slab` takes no more items. */
  sealed(slab: object): boolean;
}

/** How items of type T share slabs. */
export interface SlabTerms<T> extends SlabSizes {
  /** The slab `item` keeps alive; undefined when it shares none. */
  slabOf(item: T): object | undefined;
  /** Bytes of its slab that `item`'s own charge pays for. */
  covers(item: T): number;
}

/** Told of each item held in a shared slab: its slab, what its charge pays of it, and the slab's sizes. */
export type SlabCount = (slab: object, covers: number, sizes: SlabSizes) => void;

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
  /** Bytes charged to holders at the last settle, over all slabs. */
  charged = 0;

  /** Counts what `holdings` hold and charges each its share of every sealed slab's unpaid rest. */
  settle(holdings: Iterable<SlabHolding>): void {
    const tallies = new Map<object, Tally | null>(); // null: a slab still taking items
    const shares: [SlabHolding, Map<Tally, number>][] = [];
    for (const h of holdings) shares.push([h, this.#count(h, tallies)]);
    let charged = 0;
    for (const [h, mine] of shares) {
      let want = 0;
      for (const [t, covers] of mine) {
        if (t.bytes > t.covered) want += Math.ceil(((t.bytes - t.covered) * covers) / t.covered);
      }
      h.chargeSlabs(want);
      charged += want;
    }
    this.charged = charged;
  }

  // What `h`'s items pay for of each sealed slab, added to the slabs' tallies too. Items come in runs of one slab:
  // a run is summed and looked up once.
  #count(h: SlabHolding, tallies: Map<object, Tally | null>): Map<Tally, number> {
    const mine = new Map<Tally, number>();
    let key: object | undefined, tally: Tally | null = null, run = 0;
    const flush = () => {
      if (tally === null || run === 0) return;
      tally.covered += run;
      mine.set(tally, (mine.get(tally) ?? 0) + run);
    };
    h.countSlabs((slab, covers, sizes) => {
      if (slab !== key) {
        flush();
        key = slab;
        run = 0;
        tally = tallyOf(tallies, slab, sizes);
      }
      run += covers;
    });
    flush();
    return mine;
  }
}

function tallyOf(tallies: Map<object, Tally | null>, slab: object, sizes: SlabSizes): Tally | null {
  let t = tallies.get(slab);
  if (t === undefined) tallies.set(slab, t = sizes.sealed(slab) ? { bytes: sizes.bytesOf(slab), covered: 0 } : null);
  return t;
}
