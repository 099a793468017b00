import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { madeAhead } from "../src/kernel/made-ahead.ts";

describe("madeAhead", () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it("makes the next one in a timer task, so that the taker after that does not wait for it", () => {
    let made = 0;
    const take = madeAhead(() => ++made);
    expect(take()).toBe(1); // none ahead yet: made on the spot
    expect(made).toBe(1);
    vi.runAllTimers(); // the spare, made in a task of its own
    expect(made).toBe(2);
    expect(take()).toBe(2); // the spare: nothing made now
    expect(made).toBe(2);
    vi.runAllTimers();
    expect(take()).toBe(3);
  });

  it("makes one on the spot when the spare is not ready yet, and a spare once its timers run", () => {
    let made = 0;
    const take = madeAhead(() => ++made);
    expect([take(), take(), take()]).toEqual([1, 2, 3]);
    vi.runAllTimers();
    expect(made).toBe(4); // one spare, however many refills were asked for
    expect(take()).toBe(4);
  });

  it("asks again when a refill never ran (its timer lost), rather than stop making ahead", () => {
    let made = 0;
    const take = madeAhead(() => ++made);
    take();
    vi.clearAllTimers(); // the refill is lost
    expect(take()).toBe(2); // made on the spot, and a refill asked for again
    expect(vi.getTimerCount()).toBe(1);
    vi.runAllTimers();
    expect(take()).toBe(3);
    expect(made).toBe(3);
  });

  it("never hands the same one out twice", () => {
    let made = 0;
    const take = madeAhead(() => ({ n: ++made }));
    const seen = new Set<object>();
    for (let i = 0; i < 50; i++) {
      seen.add(take());
      if (i % 3 === 0) vi.runAllTimers();
    }
    expect(seen.size).toBe(50);
  });
});
