/**
 * The V8 heap headroom keeper (src/runtime/heap-headroom.ts): the growth it
 * asks for at each live size, when it sets V8's flag, and its undo. V8's
 * own flag is set for real in a child process, whose trace shows V8
 * computing its next limit with it (it must be taken at run time, which is
 * what the keeper relies on).
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { growingPercentFor, type HeapControls, keepHeapHeadroom } from "../src/runtime/heap-headroom.ts";
import { DEFAULT_HEAP_HEADROOM_BYTES, keepHeapHeadroom as keepOnThisRuntime } from "../src/runtime/listen.ts";

const MiB = 1024 ** 2;

/** Controls a test drives: the heap in use, the flag's history, and the major collections. */
function fakeControls(used: number) {
  const c = {
    used,
    flags: [] as number[],
    majors: [] as (() => void)[],
    stopped: 0,
  };
  const controls: HeapControls = {
    used: () => c.used,
    setGrowingPercent: (p) => void c.flags.push(p),
    onMajorCollection: (f) => {
      c.majors.push(f);
      return () => void c.stopped++;
    },
  };
  return { c, controls, major: () => c.majors.forEach((f) => f()) };
}

describe("growingPercentFor", () => {
  it("keeps the room above what is live, in steps of 10%", () => {
    expect(growingPercentFor(16 * MiB, 32 * MiB)).toBe(200); // the 16 MB heap that collected on every young fill
    expect(growingPercentFor(20 * MiB, 32 * MiB)).toBe(160);
    expect(growingPercentFor(21 * MiB, 32 * MiB)).toBe(160); // 152.4% rounds up: never less room than asked
    for (const live of [11, 12, 16, 25, 40, 63].map((m) => m * MiB)) {
      const p = growingPercentFor(live, 32 * MiB);
      expect(live * (p / 100)).toBeGreaterThanOrEqual(32 * MiB);
    }
  });

  it("leaves a heap whose half is the room to V8's own factor, caps tiny heaps at V8's ceiling, and 0 room is off", () => {
    expect(growingPercentFor(64 * MiB, 32 * MiB)).toBe(0);
    expect(growingPercentFor(300 * MiB, 32 * MiB)).toBe(0);
    expect(growingPercentFor(1 * MiB, 32 * MiB)).toBe(300); // V8's own ceiling (a factor of 4)
    expect(growingPercentFor(16 * MiB, 0)).toBe(0);
  });

  it("refuses sizes that make no sense", () => {
    expect(() => growingPercentFor(0, 32 * MiB)).toThrow(RangeError);
    expect(() => growingPercentFor(NaN, 32 * MiB)).toThrow(RangeError);
    expect(() => growingPercentFor(16 * MiB, -1)).toThrow(RangeError);
    expect(() => growingPercentFor(16 * MiB, Infinity)).toThrow(RangeError);
  });
});

describe("keepHeapHeadroom", () => {
  it("sets the growth at once and again after each major collection, only when it changes", () => {
    const { c, controls, major } = fakeControls(16 * MiB);
    keepHeapHeadroom(32 * MiB, controls);
    expect(c.flags).toEqual([200]);
    major(); // same live size: the flag is left alone
    expect(c.flags).toEqual([200]);
    c.used = 40 * MiB;
    major();
    c.used = 100 * MiB; // large enough for V8's own factor
    major();
    expect(c.flags).toEqual([200, 80, 0]);
  });

  it("gives the factor back to V8 and stops watching on undo", () => {
    const { c, controls } = fakeControls(16 * MiB);
    const undo = keepHeapHeadroom(32 * MiB, controls);
    undo();
    expect(c.flags).toEqual([200, 0]);
    expect(c.stopped).toBe(1);
  });

  it("sets nothing when the room asked for is invalid", () => {
    const { c, controls } = fakeControls(16 * MiB);
    expect(() => keepHeapHeadroom(-1, controls)).toThrow(RangeError);
    expect(c.flags).toEqual([]);
    expect(c.majors).toEqual([]);
  });

  it("is applied on Node (what `taskwire serve` does) unless the room is 0, and undone", async () => {
    const heap = await keepOnThisRuntime(DEFAULT_HEAP_HEADROOM_BYTES);
    try {
      expect(heap.applied).toBe(true);
    } finally {
      heap.undo();
    }
    expect(await keepOnThisRuntime(0)).toMatchObject({ applied: false, why: "0: V8's own heap sizing" });
  });
});

describe("keepHeapHeadroom against V8", () => {
  // A child process whose next major collection V8 traces with the factor it used (--trace-gc-verbose).
  const module = new URL("../dist/src/runtime/heap-headroom.js", import.meta.url).href;
  const run = (keep: boolean) => {
    if (!existsSync(fileURLToPath(module))) {
      throw new Error("dist/ is missing: run `npm run build` (npm test does it first)");
    }
    const script = `
      const { growingPercentFor, keepHeapHeadroom, v8HeapControls } = await import(${JSON.stringify(module)});
      const live = [];
      for (let i = 0; i < 200000; i++) live.push({ i });
      gc();
      console.log("percent", growingPercentFor(v8HeapControls().used(), ${8 * MiB}));
      if (${keep}) keepHeapHeadroom(${8 * MiB});
      gc();
      console.log("live", live.length);`;
    const out = execFileSync(process.execPath, [
      "--expose-gc",
      "--trace-gc-verbose",
      "--input-type=module",
      "-e",
      script,
    ], {
      encoding: "utf8",
    });
    const factors = [...out.matchAll(/\[HeapController\] Limit: old size: \d+ KB, new limit: \d+ KB \((\d+\.\d)\)/g)];
    return { percent: Number(/percent (\d+)/.exec(out)![1]), factor: factors.at(-1)![1] };
  };

  it("makes V8 compute the next limit with the factor it sets", () => {
    const kept = run(true);
    expect(kept.percent).toBeGreaterThan(0); // ~11 MB live: room of 8 MiB asks for 80%
    expect(kept.factor).toBe((1 + kept.percent / 100).toFixed(1));
    // Without it V8 uses a factor of its own, which is not the one asked for (else this proves nothing).
    expect(run(false).factor).not.toBe(kept.factor);
  });
});
