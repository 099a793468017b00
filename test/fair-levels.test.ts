import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import { FairLevels } from "../src/core/_fair-levels.ts";
import { createMemoryBudget } from "../src/core/budget.ts";
import { createEventQueue } from "../src/core/event-queue.ts";

// Counts the budget's countings of levels (each sorts the owners).
const counted = vi.hoisted(() => ({ levels: 0 }));
vi.mock("../src/core/_fair-levels.ts", async (original) => {
  const m = await original<typeof import("../src/core/_fair-levels.ts")>();
  class Counted extends m.FairLevels {
    constructor(held: readonly number[], budget: number) {
      super(held, budget);
      counted.levels++;
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
});
