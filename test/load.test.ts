/**
 * The event-loop load meter (src/server/load.ts): streams linger only while
 * the loop is saturated on a CPU, not while the process merely waits for one.
 */
import { describe, expect, it } from "vitest";
import { createLoadMeter, lingerFor, type LoadMeter, type LoadSamplers } from "../src/server/load.ts";

const INTERVAL_MS = 10;

// Samplers that report a loop `elu` busy (wall time) and a process on a CPU for `cpu` of each interval.
function scripted(elu: number, cpu: number | undefined): LoadSamplers {
  let at = 0;
  let used = 0;
  return {
    elu: (a) => (a === undefined ? { idle: 0, active: 0, utilization: 0 } : { ...a, utilization: elu }),
    cpuUs: cpu === undefined ? undefined : () => (used += cpu * INTERVAL_MS * 1000),
    nowMs: () => (at += INTERVAL_MS),
  };
}

async function sampled(samplers: LoadSamplers): Promise<LoadMeter> {
  const meter = createLoadMeter(INTERVAL_MS, samplers);
  await new Promise((r) => setTimeout(r, INTERVAL_MS * 5));
  return meter;
}

describe("load meter", () => {
  it("maps saturation to a linger: none below 0.75, 5 ms to 0.9, 20 ms above", () => {
    expect([0, 0.5, 0.74, 0.75, 0.89, 0.9, 1].map(lingerFor)).toEqual([0, 0, 0, 5, 5, 20, 20]);
  });

  it("lingers while the loop is busy on a CPU", async () => {
    const meter = await sampled(scripted(0.95, 0.95));
    expect(meter.utilization).toBe(0.95);
    expect(meter.saturation).toBeCloseTo(0.95);
    expect(meter.lingerMs()).toBe(20);
  });

  it("does not linger when the loop reads busy only because the process waited for a CPU", async () => {
    // Preempted: callbacks span 85% of the wall time, the process ran for 25% of it.
    const meter = await sampled(scripted(0.85, 0.25));
    expect(meter.utilization).toBe(0.85);
    expect(meter.saturation).toBeCloseTo(0.25);
    expect(meter.lingerMs()).toBe(0);
  });

  it("follows utilization alone where the runtime has no CPU time", async () => {
    const meter = await sampled(scripted(0.8, undefined));
    expect(meter.lingerMs()).toBe(5);
  });

  it("samples when read, at most once an interval, over the time since its last sample", () => {
    let now = 0, busy = 0;
    const meter = createLoadMeter(100, {
      elu: (a) => (a === undefined ? { idle: 0, active: 0, utilization: 0 } : { ...a, utilization: busy }),
      nowMs: () => now,
    });
    busy = 0.95;
    now = 99;
    expect(meter.lingerMs()).toBe(0); // within the first interval: no sample yet
    now = 100;
    expect(meter.lingerMs()).toBe(20);
    busy = 0.1;
    now = 150;
    expect(meter.saturation).toBeCloseTo(0.95); // the last sample stands until an interval has passed
    now = 5000; // idle for seconds, and no timer woke the process meanwhile
    expect(meter.utilization).toBe(0.1);
    expect(meter.lingerMs()).toBe(0);
  });

  it("reads the real loop as saturated while a callback spins (the overload protection stays)", async () => {
    const meter = createLoadMeter(50);
    const until = performance.now() + 400;
    // Back-to-back callbacks that each hold the loop 20 ms, as a dispatch storm does.
    await new Promise<void>((resolve) => {
      const spin = (): void => {
        const end = performance.now() + 20;
        while (performance.now() < end);
        if (performance.now() < until) setImmediate(spin);
        else resolve();
      };
      spin();
    });
    await new Promise((r) => setImmediate(r)); // let the last interval's sample run
    expect(meter.saturation).toBeGreaterThanOrEqual(0.75);
    expect(meter.lingerMs()).toBeGreaterThan(0);
  });
});
