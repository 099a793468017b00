import fc from "fast-check";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it, vi } from "vitest";
import { FairLevels } from "../src/core/_fair-levels.ts";
import { createMemoryBudget } from "../src/core/budget.ts";
import { createEventQueue } from "../src/core/event-queue.ts";
import { Listener } from "../src/core/listener.ts";

// Counts the budget's countings of levels (each sorts the owners), and the levels it reads from them (a search each);
// keeps a weak reference to each counting, to see which are still held.
const counted = vi.hoisted(() => ({ levels: 0, reads: 0, made: [] as WeakRef<object>[] }));
vi.mock("../src/core/_fair-levels.ts", async (original) => {
  const m = await original<typeof import("../src/core/_fair-levels.ts")>();
  class Counted extends m.FairLevels {
    constructor(held: readonly number[], budget: number) {
      super(held, budget);
      counted.levels++;
      counted.made.push(new WeakRef(this));
    }
    override levelOf(own: number | undefined): number {
      counted.reads++;
      return super.levelOf(own);
    }
  }
  return { FairLevels: Counted };
});

// The level by its definition: the k smallest others under it, the rest and the owner at it.
function reference(others: number[], budget: number): number {
  const sorted = [...others].sort((a, b) => a - b);
  let below = 0;
  for (let k = 0; k <= sorted.length; k++) {
    const level = (budget - below) / (sorted.length - k + 1);
    if ((k === 0 || sorted[k - 1]! <= level) && (k === sorted.length || level <= sorted[k]!)) return Math.floor(level);
    below += sorted[k]!;
  }
  throw new Error("no level");
}

describe("max-min fair shares", () => {
  it("is the level at which the others, each at most at it, and the owner at it fill the budget", () => {
    const levels = new FairLevels([9_000, 1_000], 10_000);
    expect(levels.levelOf(undefined)).toBe(4_500); // "1,000" under it; 9,000 and the newcomer at it
    expect(levels.levelOf(1_000)).toBe(5_000); // the owner holding 1,000, with 9,000 beside it: half each
    expect(levels.levelOf(9_000)).toBe(9_000); // beside 1,000, the owner holding 9,000 may hold the rest
    expect(new FairLevels([], 10_000).levelOf(undefined)).toBe(10_000);
    expect(new FairLevels([7], 10_000).levelOf(7)).toBe(10_000);
  });

  it("many owners holding little do not shrink the share of one that needs more (the even split would)", () => {
    const held = [...Array.from({ length: 50 }, () => 2_000), 900_000];
    const levels = new FairLevels(held, 1_000_000);
    expect(levels.levelOf(undefined)).toBe(450_000); // the even split over 52 owners: 19,230
    expect(levels.levelOf(900_000)).toBe(900_000);
  });

  it("matches the definition, and is never below the even split, for any holdings", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 2_000_000 }), { maxLength: 40 }),
        fc.integer({ min: 1, max: 4_000_000 }),
        fc.option(fc.nat(), { nil: undefined }),
        (held, budget, pick) => {
          const levels = new FairLevels(held, budget);
          const own = pick === undefined || held.length === 0 ? undefined : held[pick % held.length]!;
          const others = [...held];
          if (own !== undefined) others.splice(others.indexOf(own), 1);
          const level = levels.levelOf(own);
          expect(level).toBe(reference(others, budget));
          expect(level).toBeGreaterThanOrEqual(Math.floor(budget / (others.length + 1)));
          expect(level).toBeLessThanOrEqual(budget);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it("are not counted again at every claim while principals come and go, one per exit", () => {
    const budget = createMemoryBudget({ limit: 4 * 1024 ** 2, reserve: { fraction: 1 / 8 } });
    const rec = (n: number) => ({ cpu: 0, n });
    const hog = createEventQueue(1 << 20, "drop-newest", { account: budget.open("hog") });
    const reader = createEventQueue(1 << 20, "drop-newest", { account: budget.open("reader") });
    const idle = Array.from({ length: 1000 }, (_, i) => budget.open(`idle${i}`));
    for (const a of idle) a.charge(1024);
    for (let n = 1; n <= 4000; n++) hog.push(n, rec(n), 920); // 1,000 bytes each: past the budget, to its level
    counted.levels = 0;
    for (let n = 1; n <= 2000; n++) {
      reader.push(n, rec(n), 920); // borrowing (what the idle principals leave) from "hog", to its level
      idle.shift()!.close();
      idle.push(budget.open(`idle${1000 + n}`));
      idle.at(-1)!.charge(1024);
    }
    // Counted again each time one came or went, the 1,002 owners were sorted at 755 of these claims.
    expect(counted.levels).toBeLessThan(50);
    // Both borrowed to the same level, under seven eighths.
    expect(Math.abs(budget.usedBy("reader") - budget.usedBy("hog"))).toBeLessThan(4096);
    expect(budget.usedBy("reader")).toBeGreaterThan(budget.fairShare * 50);
    expect(budget.used).toBeLessThanOrEqual(budget.limit - budget.reserve);
  });

  it("a full budget refuses a listener over its level at the cost of one claim, reading each level once per count", () => {
    // Four principals with two never-reading listeners each (a batch taken, then nothing) and a reader taking every
    // ten exits: the attackers fill the budget to their levels, then each exit is refused to each of their listeners.
    const budget = createMemoryBudget({ limit: 1024 ** 2, reserve: { fraction: 1 / 8 } });
    const rec = (n: number) => ({ cpu: 0, n });
    const listener = (owner: string, account = budget.open(owner)) =>
      new Listener<{ cpu: number; n: number }, string>({
        id: owner,
        capacity: 1 << 20,
        policy: "drop-newest",
        ephemeral: false,
        owner,
        now: 0,
        retain: (r) => `payload ${r.n}`,
        account,
        sizeOf: () => 1000,
        sizeOfPayload: () => 500,
      });
    const owners = ["a0", "a1", "a2", "a3"];
    const attackers = owners.flatMap((o) => [listener(o), listener(o)]);
    const reader = listener("r");
    let n = 0;
    const deliver = () => {
      n++;
      for (const l of [...attackers, reader]) l.deliver(rec(n));
      if (n % 10 === 0) reader.take(Infinity);
    };
    for (let i = 0; i < 300; i++) deliver();
    for (const l of attackers) l.take(256); // a batch in flight, retained
    while (budget.used < budget.limit - budget.reserve - 16 * 1024) deliver();
    // What the attackers' listeners ask of the budget: their owners' pools (the queue's and the retention's).
    let asked = 0;
    for (const l of attackers.filter((_, i) => i % 2 === 0)) {
      const pool = l.account.pool, claim = pool.claim.bind(pool), canClaim = pool.canClaim.bind(pool);
      vi.spyOn(pool, "claim").mockImplementation((bytes) => (asked++, claim(bytes)));
      vi.spyOn(pool, "canClaim").mockImplementation((bytes) => (asked++, canClaim(bytes)));
    }
    const dropped = () => attackers.reduce((sum, l) => sum + l.lost["memory-budget"], 0);
    const droppedBefore = dropped();
    counted.levels = counted.reads = 0;
    for (let i = 0; i < 5000; i++) deliver();
    const drops = dropped() - droppedBefore;
    expect(drops).toBeGreaterThan(0.9 * 5000 * attackers.length);
    // Asked again after its retention, given up, had nothing to give, and its level searched at each ask: three
    // claims a dropped exit, each reading a level.
    expect(asked).toBeLessThanOrEqual(drops * 1.05);
    expect(counted.reads).toBeLessThanOrEqual((counted.levels + 1) * (owners.length + 1));
    expect(reader.lost["memory-budget"]).toBe(0);
    expect(budget.used).toBeLessThanOrEqual(budget.limit);
  });

  it("holds no counting of levels past the next: an owner's cached level keeps only what it read", async () => {
    // Principals joining one after another, each with a stream that never reads: its queue fills once, past its fair
    // share (its level is read), and then is full and asks nothing more. A reader's traffic has the levels counted
    // again between them. Each owner kept the counting it last read its level from alive, 16 bytes per owner counted,
    // none of it charged: 620 of 663 countings here; with 4,096 principals (the most listeners a server holds) and a
    // 64 MiB budget, 29 MB, and 134 MB where each had read its level from a counting of its own.
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const budget = createMemoryBudget({ limit: 16 * 1024 ** 2, reserve: { fraction: 1 / 8 } });
    const rec = { cpu: 0 };
    const hog = createEventQueue(1 << 20, "drop-newest", { account: budget.open("hog") });
    for (let s = 1; hog.push(s, rec, 920) === 0; s++);
    const reader = createEventQueue(1 << 20, "drop-newest", { account: budget.open("reader") });
    const quiet: unknown[] = [];
    counted.made = [];
    for (let i = 0, seq = 1; i < 1000; i++) {
      const queue = createEventQueue(64, "drop-newest", { account: budget.open(`p${i}`) });
      for (let s = 1; s <= 64; s++) queue.push(s, rec, 920);
      quiet.push(queue);
      for (let k = 0; k < 100; k++) reader.push(seq++, rec, 920), reader.take(Infinity);
    }
    expect(counted.made.length).toBeGreaterThan(500); // counted again between most two principals
    await new Promise((r) => setTimeout(r, 0)); // a WeakRef holds its target until the job that made it ends
    gc();
    expect(counted.made.filter((r) => r.deref() !== undefined).length).toBeLessThanOrEqual(2);
    expect(quiet.length).toBe(1000);
  });
});
