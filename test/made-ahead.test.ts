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

  it("makes one on the spot when the spare is not ready yet, and schedules one refill at a time", () => {
    let made = 0;
    const take = madeAhead(() => ++made);
    expect([take(), take(), take()]).toEqual([1, 2, 3]);
    expect(vi.getTimerCount()).toBe(1);
    vi.runAllTimers();
    expect(made).toBe(4);
    expect(take()).toBe(4);
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
