import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ExitRecord } from "../src/kernel/exit-record.ts";
import { createEventQueue, type QueueItem } from "../src/core/event-queue.ts";

const rec = (n: number): ExitRecord => ({
  cpu: 0,
  cpuSeq: n,
  receivedAtMs: 0,
  pid: n,
  tgid: n,
  pidStats: { $typeName: "taskwire.kernel.v1.TaskStats" },
});
const describeItems = (items: QueueItem[]) =>
  items.map((i) => (i.kind === "exit" ? i.seq : `lost ${i.first}-${i.last} ${i.reason}`));

describe("event queue", () => {
  it("DROP_NEWEST keeps the oldest and reports the dropped seqs after them", () => {
    const q = createEventQueue(3, "drop-newest");
    for (let s = 1; s <= 6; s++) q.push(s, rec(s));
    expect(q.depth).toBe(3);
    expect(describeItems(q.take(10))).toEqual([1, 2, 3, "lost 4-6 subscriber-overflow"]);
  });

  it("DROP_OLDEST keeps the newest and reports the dropped seqs before them", () => {
    const q = createEventQueue(3, "drop-oldest");
    for (let s = 1; s <= 6; s++) q.push(s, rec(s));
    expect(describeItems(q.take(10))).toEqual(["lost 1-3 subscriber-overflow", 4, 5, 6]);
  });

  it("keeps separate ranges when drops are not contiguous", () => {
    const q = createEventQueue(1, "drop-newest");
    q.push(1, rec(1));
    q.push(2, rec(2));
    expect(describeItems(q.take(1))).toEqual([1]);
    q.push(3, rec(3));
    q.push(4, rec(4));
    expect(describeItems(q.take(10))).toEqual(["lost 2-2 subscriber-overflow", 3, "lost 4-4 subscriber-overflow"]);
  });

  it("places kernel losses in stream order, merging contiguous ones of the same CPU", () => {
    const q = createEventQueue(10);
    q.push(1, rec(1));
    q.pushLoss(2, 3, "kernel-overflow", 1);
    q.pushLoss(4, 4, "kernel-overflow", 1);
    q.pushLoss(5, 5, "kernel-overflow", 2);
    q.push(6, rec(6));
    expect(describeItems(q.take(10))).toEqual([1, "lost 2-4 kernel-overflow", "lost 5-5 kernel-overflow", 6]);
  });

  it("refuses a non-positive capacity", () => {
    expect(() => createEventQueue(0)).toThrow(RangeError);
  });

  it("accounts for every seq exactly once, in order, under random pushes and takes (both policies)", () => {
    const step = fc.oneof(
      fc.record({ push: fc.integer({ min: 1, max: 20 }) }),
      fc.record({ take: fc.integer({ min: 1, max: 20 }) }),
      fc.record({ kernel: fc.integer({ min: 1, max: 5 }) }),
    );
    fc.assert(
      fc.property(
        fc.constantFrom("drop-newest" as const, "drop-oldest" as const),
        fc.integer({ min: 1, max: 8 }),
        fc.array(step, { maxLength: 80 }),
        (policy, cap, steps) => {
          const q = createEventQueue(cap, policy);
          let produced = 0;
          const seen: number[] = [];
          const overflowSeen: number[] = [], droppedNewest: number[] = [];
          const drain = (n: number) => {
            for (const item of q.take(n)) {
              if (item.kind === "exit") seen.push(item.seq);
              else {
                for (let s = item.first; s <= item.last; s++) seen.push(s);
                if (item.reason === "subscriber-overflow") {
                  for (let s = item.first; s <= item.last; s++) overflowSeen.push(s);
                }
              }
            }
          };
          for (const s of steps) {
            if ("push" in s) {
              for (let i = 0; i < s.push; i++) {
                produced++;
                if (q.push(produced, rec(produced)) > 0 && policy === "drop-newest") droppedNewest.push(produced);
              }
            } else if ("kernel" in s) {
              q.pushLoss(produced + 1, produced + s.kernel, "kernel-overflow", 0);
              produced += s.kernel;
            } else drain(s.take);
            expect(q.depth).toBeLessThanOrEqual(cap);
            expect(q.length).toBeLessThanOrEqual(2 * cap + 2 * steps.length + 1);
          }
          drain(Infinity);
          expect(seen).toEqual(Array.from({ length: produced }, (_, i) => i + 1));
          // Drop-newest: exactly the exits whose push said "dropped" come back as overflow, each once.
          if (policy === "drop-newest") expect(overflowSeen).toEqual(droppedNewest);
        },
      ),
      { numRuns: 500 },
    );
  });
});
