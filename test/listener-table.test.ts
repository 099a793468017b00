import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createListenerTable } from "../src/kernel/listener-table.ts";

describe("listener table", () => {
  it("registering a CPU twice is a no-op and reports demand only once", () => {
    const t = createListenerTable<string>(8);
    expect(t.add("a", [1, 2])).toEqual({ added: [1, 2], removed: [] });
    expect(t.add("a", [2, 3])).toEqual({ added: [3], removed: [] });
    expect(t.add("b", [3])).toEqual({ added: [], removed: [] });
    expect(t.on(2)).toEqual(["a"]);
    expect(t.on(3)).toEqual(["a", "b"]);
    expect(t.cpusOf("a")).toEqual([1, 2, 3]);
  });

  it("deregisters partial masks and reports CPUs that lost their last listener", () => {
    const t = createListenerTable<string>(8);
    t.add("a", [0, 1, 2]);
    t.add("b", [1]);
    expect(t.remove("a", [1, 2, 7])).toEqual({ added: [], removed: [2] });
    expect(t.cpusOf("a")).toEqual([0]);
    expect(t.watched()).toEqual([0, 1]);
    expect(t.remove("b", [1])).toEqual({ added: [], removed: [1] });
    expect(t.remove("nobody", [0])).toEqual({ added: [], removed: [] });
  });

  it("refuses CPUs outside the table with RangeError", () => {
    const t = createListenerTable<string>(4);
    expect(() => t.add("a", [4])).toThrow(RangeError);
    expect(() => createListenerTable(0)).toThrow(RangeError);
  });

  it("delivering on a CPU touches only that CPU's listeners", () => {
    const t = createListenerTable<{ id: number; cpus: number[] }>(64);
    const ls = Array.from({ length: 1000 }, (_, id) => ({ id, cpus: [id % 64] }));
    for (const l of ls) t.add(l, l.cpus);
    expect(t.on(5).length).toBe(ls.filter((l) => l.cpus[0] === 5).length);
    expect(t.on(5).every((l) => l.cpus.includes(5))).toBe(true);
  });

  it("matches a naive model under random operations", () => {
    const op = fc.record({
      add: fc.boolean(),
      who: fc.integer({ min: 0, max: 5 }),
      cpus: fc.uniqueArray(fc.integer({ min: 0, max: 15 }), { maxLength: 6 }),
    });
    fc.assert(fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
      const t = createListenerTable<number>(16);
      const model = new Map<number, Set<number>>();
      for (const o of ops) {
        const before = new Set([...model.values()].flatMap((s) => [...s]));
        const mine = model.get(o.who) ?? new Set<number>();
        for (const c of o.cpus) o.add ? mine.add(c) : mine.delete(c);
        model.set(o.who, mine);
        const after = new Set([...model.values()].flatMap((s) => [...s]));
        const change = o.add ? t.add(o.who, o.cpus) : t.remove(o.who, o.cpus);
        expect(new Set(change.added)).toEqual(new Set([...after].filter((c) => !before.has(c))));
        expect(new Set(change.removed)).toEqual(new Set([...before].filter((c) => !after.has(c))));
      }
      for (let cpu = 0; cpu < 16; cpu++) {
        const want = [...model].filter(([, s]) => s.has(cpu)).map(([w]) => w).sort();
        expect([...t.on(cpu)].sort()).toEqual(want);
      }
    }));
  });
});
