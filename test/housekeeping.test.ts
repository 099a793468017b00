/**
 * The registry's timers (core/housekeeping.ts): a task that throws is
 * reported and runs again on the next tick, instead of an uncaught exception
 * in a timer.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { startHousekeeping } from "../src/core/housekeeping.ts";

afterEach(() => {
  vi.useRealTimers();
});

describe("housekeeping", () => {
  it("reports a task that throws and runs it again on the next tick", () => {
    vi.useFakeTimers();
    const calls = { reap: 0, sample: 0, settle: 0, stalled: 0 };
    const errors: string[] = [];
    const h = startHousekeeping(
      {
        limits: { leaseMs: 4000 } as never,
        reap: () => calls.reap++,
        sampleRates: () => void calls.sample++,
        settleSlabs: () => {
          calls.settle++;
          throw new Error("a bug");
        },
        endStalled: () => calls.stalled++, // runs although the task before it threw
      },
      (what, err) => errors.push(`${what}: ${(err as Error).message}`),
    );
    vi.advanceTimersByTime(2000);
    h.stop();
    vi.advanceTimersByTime(2000);
    expect(calls).toEqual({ reap: 2, sample: 2, settle: 2, stalled: 2 });
    expect(errors).toEqual(["sampling rates and charging slabs: a bug", "sampling rates and charging slabs: a bug"]);
  });
});
