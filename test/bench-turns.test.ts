import { describe, expect, it } from "vitest";
import { firstMessages, SLICE_MS, WARM_UP_EVENTS, WARM_UP_MS, warmUpMs } from "../bench/_interleaved.ts";

describe("the latency bench's turns", () => {
  it("finds each turn's first message: the events read at a turn's first instant", () => {
    const gap = SLICE_MS * 1000; // µs: another server's turn between two of this one's
    // Turn 1: a message of 2 events at 0, then one at 1,000. Turn 2 (after a gap): 3 events at one instant, then more.
    const arrivals = [0, 0, 1_000, 2_000, gap + 2_000, gap + 2_000, gap + 2_000, gap + 3_000];
    const latencies = [500, 510, 200, 210, 600, 610, 620, 220];
    expect(firstMessages(latencies, arrivals)).toEqual([500, 510, 600, 610, 620]);
  });

  it("starts no turn at a gap under half a turn, and none for no events", () => {
    const step = (SLICE_MS / 2) * 1000; // exactly half a turn: the same turn
    expect(firstMessages([1, 2, 3], [0, step, 2 * step])).toEqual([1]);
    expect(firstMessages([1, 2], [0, step + 1])).toEqual([1, 2]);
    expect(firstMessages([], [])).toEqual([]);
  });

  it("warms a row up on as many events at any rate, never for less than WARM_UP_MS", () => {
    expect(warmUpMs(10_000)).toBe(WARM_UP_MS); // 30,000 events in 3 s
    expect(warmUpMs(1_000)).toBe((WARM_UP_EVENTS / 1_000) * 1000); // 30 s
    expect(warmUpMs(1_000)).toBeGreaterThan(WARM_UP_MS);
    expect(warmUpMs(3_000)).toBe(10_000);
    expect(warmUpMs(7)).toBe(Math.ceil((WARM_UP_EVENTS / 7) * 1000)); // rounded up to whole ms
    expect(warmUpMs(1_000_000)).toBe(WARM_UP_MS); // a fast row still warms up 3 s
  });
});
