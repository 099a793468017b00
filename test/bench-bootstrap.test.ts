import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { cutBlocks, mergeBlocks, quantileOf, ratioInterval, unionQuantile } from "../bench/_bootstrap.ts";

// Exponential-ish latencies (µs) from a seeded generator, with a heavy tail like the bench's.
function latencies(n: number, seed: number, scale = 1): number[] {
  let s = seed;
  const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296);
  return Array.from({ length: n }, () => Math.round(scale * (100 - 150 * Math.log(1 - next() * 0.9999))));
}

const rounds = (xs: number[][], blocks: number) => xs.map((w) => cutBlocks(w, blocks));

describe("the latency bench's bootstrap", () => {
  it("cuts a window into blocks of consecutive events, every event in one", () => {
    const w = [5, 1, 4, 2, 3, 9, 7];
    const blocks = cutBlocks(w, 3);
    expect(blocks.map((b) => [...b])).toEqual([[1, 5], [2, 4], [3, 7, 9]]);
    expect(() => cutBlocks(w, 0)).toThrow(RangeError);
  });

  it("merges two servers' blocks pairwise, sorted, and refuses blocks that do not pair up", () => {
    const merged = mergeBlocks([Float64Array.of(1, 5), Float64Array.of(2)], [
      Float64Array.of(3),
      Float64Array.of(0, 9),
    ]);
    expect(merged.map((b) => [...b])).toEqual([[1, 3, 5], [0, 2, 9]]);
    expect(() => mergeBlocks([Float64Array.of(1)], [])).toThrow(RangeError);
  });

  it("finds the union's quantile as sorting the union would", () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 30 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(7), { minLength: 1, maxLength: 12 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (raw, picks, q) => {
          const blocks = raw.map((b) => Float64Array.from(b).sort());
          const chosen = picks.map((p) => blocks[p % blocks.length]!);
          const union = Float64Array.from(chosen.flatMap((b) => [...b])).sort();
          const values = Float64Array.from(raw.flat()).sort();
          const got = unionQuantile(values, chosen, q);
          expect(Number.isNaN(got) ? NaN : got).toEqual(quantileOf(union, q));
        },
      ),
    );
  });

  it("reads exactly the scale between two servers whose events differ by one factor", () => {
    const a = [latencies(4000, 1), latencies(4000, 2)];
    const r = ratioInterval(rounds(a.map((w) => w.map((x) => x * 1.5)), 20), rounds(a, 20), { q: 0.99, draws: 300 });
    expect(r.estimate).toBeCloseTo(1.5, 10);
    expect(r.low).toBeCloseTo(1.5, 10);
    expect(r.high).toBeCloseTo(1.5, 10);
  });

  it("holds 1.0 for two identical servers' independent samples, and excludes it for a 1.5x slower one", () => {
    const base = [latencies(8000, 11), latencies(8000, 12), latencies(8000, 13)];
    const same = [latencies(8000, 21), latencies(8000, 22), latencies(8000, 23)];
    const slow = [latencies(8000, 31, 1.5), latencies(8000, 32, 1.5), latencies(8000, 33, 1.5)];
    const control = ratioInterval(rounds(same, 20), rounds(base, 20), { q: 0.99 });
    expect(control.low).toBeLessThanOrEqual(1);
    expect(control.high).toBeGreaterThanOrEqual(1);
    expect(control.high - control.low).toBeLessThan(0.4);
    const slower = ratioInterval(rounds(slow, 20), rounds(base, 20), { q: 0.99 });
    expect(slower.low).toBeGreaterThan(1.2);
    expect(slower.low).toBeLessThanOrEqual(slower.estimate);
    expect(slower.high).toBeGreaterThanOrEqual(slower.estimate);
  });

  it("counts what differs between rounds as uncertain: a per-round slowdown of one server widens the interval to hold it", () => {
    // The same distribution, but each of a's rounds ran at its own speed (as a process placed on a busier CPU
    // would): blocks drawn inside rounds alone would read the mix of these factors as certain.
    const factors = [0.7, 1.3, 0.75, 1.25, 0.8, 1.2];
    const a = factors.map((f, i) => latencies(6000, 40 + i, f));
    const b = factors.map((_, i) => latencies(6000, 50 + i));
    const r = ratioInterval(rounds(a, 20), rounds(b, 20), { q: 0.99 });
    expect(r.low).toBeLessThan(0.9);
    expect(r.high).toBeGreaterThan(1.1);
    expect(r.low).toBeLessThanOrEqual(1);
    expect(r.high).toBeGreaterThanOrEqual(1);
  });

  it("gives the same interval for the same events (seeded draws), and refuses unpaired rounds", () => {
    const a = rounds([latencies(2000, 5)], 10), b = rounds([latencies(2000, 6)], 10);
    expect(ratioInterval(a, b, { q: 0.99, draws: 200 })).toEqual(ratioInterval(a, b, { q: 0.99, draws: 200 }));
    expect(() => ratioInterval(a, rounds([latencies(2000, 6)], 9), { q: 0.99 })).toThrow(RangeError);
    expect(() => ratioInterval([], [], { q: 0.99 })).toThrow(RangeError);
  });
});
