import { describe, expect, it } from "vitest";
import { type TapEnd, tapped } from "../src/rpc/tapped.ts";

// A source that records whether it was closed, failing after its values when asked.
function source(values: number[], fail?: Error) {
  const seen = { closed: false };
  const gen = (async function* () {
    try {
      yield* values;
      if (fail !== undefined) throw fail;
    } finally {
      seen.closed = true;
    }
  })();
  return { gen, seen };
}

function watch() {
  const log: (number | string)[] = [];
  const ends: [TapEnd, unknown][] = [];
  return {
    log,
    ends,
    tap: { each: (v: number) => log.push(v), end: (how: TapEnd, err: unknown) => ends.push([how, err]) },
  };
}

describe("tapped", () => {
  it("passes every value through, tells each, and the end once", async () => {
    const { gen } = source([1, 2, 3]);
    const w = watch();
    const out: number[] = [];
    const it = tapped(gen, w.tap);
    for await (const v of it) out.push(v);
    expect(out).toEqual([1, 2, 3]);
    expect(w.log).toEqual([1, 2, 3]);
    expect(await it.next()).toEqual({ done: true, value: undefined });
    await it.return!();
    expect(w.ends).toEqual([["done", undefined]]);
  });

  it("rethrows a failure after telling it", async () => {
    const boom = new Error("boom");
    const { gen } = source([1], boom);
    const w = watch();
    const out: number[] = [];
    await expect((async () => {
      for await (const v of tapped(gen, w.tap)) out.push(v);
    })()).rejects.toBe(boom);
    expect(out).toEqual([1]);
    expect(w.ends).toEqual([["failed", boom]]);
  });

  it("a watcher that throws fails the stream: its end is told and the source closed", async () => {
    const { gen, seen } = source([1, 2, 3]);
    const bad = new Error("watcher");
    const ends: [TapEnd, unknown][] = [];
    const each = (v: number) => {
      if (v === 2) throw bad;
    };
    const out: number[] = [];
    await expect((async () => {
      for await (const v of tapped(gen, { each, end: (how, err) => ends.push([how, err]) })) out.push(v);
    })()).rejects.toBe(bad);
    expect(out).toEqual([1]);
    expect(seen.closed).toBe(true);
    expect(ends).toEqual([["failed", bad]]);
  });

  it("a failing watcher closes the source even when its end throws, or the source's return() throws at once", async () => {
    const { gen, seen } = source([1, 2]);
    const bad = new Error("watcher"), endBad = new Error("end");
    const each = () => {
      throw bad;
    };
    const it1 = tapped(gen, {
      each,
      end: () => {
        throw endBad;
      },
    });
    await expect(it1.next()).rejects.toBe(endBad);
    expect(seen.closed).toBe(true);
    // A hand-written source whose return() throws synchronously: the watcher's error is still the one raised.
    const sync: AsyncIterator<number> = {
      next: () => Promise.resolve({ done: false, value: 1 }),
      return: () => {
        throw new Error("return threw");
      },
    };
    const ends: TapEnd[] = [];
    const it2 = tapped({ [Symbol.asyncIterator]: () => sync }, { each, end: (how) => ends.push(how) });
    await expect(it2.next()).rejects.toBe(bad);
    expect(ends).toEqual(["failed"]);
  });

  it("a consumer stopping early closes the source and is told as stopped", async () => {
    const { gen, seen } = source([1, 2, 3]);
    const w = watch();
    for await (const v of tapped(gen, w.tap)) if (v === 2) break;
    expect(seen.closed).toBe(true);
    expect(w.log).toEqual([1, 2]);
    expect(w.ends).toEqual([["stopped", undefined]]);
  });

  it("forwards throw() to the source, as a body cancelled by connect-es gets it, and tells the end", async () => {
    const { gen, seen } = source([1, 2, 3]);
    const w = watch();
    const it = tapped(gen, w.tap);
    await it.next();
    const gone = new Error("client went away");
    await expect(it.throw!(gone)).rejects.toBe(gone);
    expect(seen.closed).toBe(true);
    expect(w.ends).toEqual([["failed", gone]]);
    // A source without throw() is closed, and the error rethrown.
    let closed = false;
    const plain: AsyncIterable<number> = {
      [Symbol.asyncIterator]: () => ({
        next: () => Promise.resolve({ done: false, value: 1 }),
        return: () => ((closed = true), Promise.resolve({ done: true, value: undefined })),
      }),
    };
    const w2 = watch();
    await expect(tapped(plain, w2.tap).throw!(gone)).rejects.toBe(gone);
    expect(closed).toBe(true);
    expect(w2.ends).toEqual([["failed", gone]]);
  });
});
