import fc from "fast-check";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
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
      fc.record({ give: fc.integer({ min: 1, max: 10 }) }), // another principal takes the room of this many
    );
    fc.assert(
      fc.property(
        fc.constantFrom("drop-newest" as const, "drop-oldest" as const),
        fc.integer({ min: 1, max: 8 }),
        fc.array(step, { maxLength: 80 }),
        (policy, cap, steps) => {
          const q = createEventQueue(cap, policy);
          let produced = 0, dropped = 0;
          const seen: number[] = [];
          const overflowSeen: number[] = [], droppedNewest: number[] = [];
          const drain = (n: number) => {
            const items = q.take(n);
            // Markers whose seqs run on, for the same reason and CPU, are always one.
            for (let k = 1; k < items.length; k++) {
              const [a, b] = [items[k - 1]!, items[k]!];
              if (a.kind === "lost" && b.kind === "lost") {
                expect(a.reason !== b.reason || a.cpu !== b.cpu || a.last + 1 !== b.first).toBe(true);
              }
            }
            const dropMarkers = items.filter((i) => i.kind === "lost" && i.reason !== "kernel-overflow").length;
            expect(dropMarkers).toBeLessThanOrEqual(items.length - dropMarkers + 1); // never two in a row
            for (const item of items) {
              if (item.kind === "exit") seen.push(item.seq);
              else {
                for (let s = item.first; s <= item.last; s++) seen.push(s);
                if (item.reason === "subscriber-overflow" || item.reason === "memory-budget") {
                  for (let s = item.first; s <= item.last; s++) overflowSeen.push(s);
                }
              }
            }
          };
          for (const s of steps) {
            if ("push" in s) {
              for (let i = 0; i < s.push; i++) {
                produced++;
                const n = q.push(produced, rec(produced));
                dropped += n;
                if (n > 0 && policy === "drop-newest") droppedNewest.push(produced);
                // The queue's own count of drops is the sum of what push() returned; its newest item covers the seq.
                expect(q.drops).toBe(dropped);
                expect(q.endsAt(produced)).toBe(true);
              }
            } else if ("give" in s) {
              const before = { drops: q.budgetDrops, depth: q.depth };
              q.dropBytes(s.give * 80); // an unbudgeted queue's exits cost 80 each (a new marker 96)
              expect(q.budgetDrops - before.drops).toBe(before.depth - q.depth);
              // At least one if any (a drop that joins two markers gives back one of them too: 176 bytes).
              expect(q.budgetDrops - before.drops).toBeGreaterThanOrEqual(Math.min(1, before.depth));
            } else if ("kernel" in s) {
              q.pushLoss(produced + 1, produced + s.kernel, "kernel-overflow", 0);
              produced += s.kernel;
            } else drain(s.take);
            expect(q.depth).toBeLessThanOrEqual(cap);
            expect(q.length).toBeLessThanOrEqual(2 * cap + 2 * steps.length + 1);
          }
          drain(Infinity);
          expect(q.endsAt(produced)).toBe(false); // empty
          expect(seen).toEqual(Array.from({ length: produced }, (_, i) => i + 1));
          // Every exit the queue dropped (a full queue's, or another principal's taking) comes back in a drop
          // marker, each once; a full queue's and a full budget's drops side by side share one.
          expect(overflowSeen.length).toBe(dropped + q.budgetDrops);
          // Drop-newest: the exits whose push said "dropped" are among them.
          if (policy === "drop-newest") expect(droppedNewest.every((seq) => overflowSeen.includes(seq))).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("leaves one marker where another principal took the room of exits between markers", () => {
    // Exits and markers alternating, as a stalled queue's become when principals come and go: 1, lost 2, 3, ...
    const q = createEventQueue(1 << 20, "drop-newest");
    const n = 40_000;
    for (let s = 1; s <= n; s += 2) {
      q.push(s, rec(s));
      q.pushLoss(s + 1, s + 1, "memory-budget");
    }
    // Left apart, every other marker stayed: each drop walked and shifted all of them (44 s for 32,000 exits).
    q.dropBytes(Infinity);
    expect(q.length).toBe(1);
    expect(describeItems(q.take(Infinity))).toEqual([`lost 1-${n} memory-budget`]);
    expect(q.budgetDrops).toBe(n / 2);
  });

  // Past a thousand taken items the queue cuts them off its arrays, and a
  // drained queue starts new ones: chunks large enough to reach both.
  it("keeps order and records through queues of thousands of items", () => {
    const step = fc.oneof(
      fc.record({ push: fc.integer({ min: 1, max: 3000 }) }),
      fc.record({ take: fc.integer({ min: 1, max: 3000 }) }),
      fc.record({ kernel: fc.integer({ min: 1, max: 3 }) }),
    );
    fc.assert(
      fc.property(
        fc.constantFrom("drop-newest" as const, "drop-oldest" as const),
        fc.integer({ min: 500, max: 5000 }),
        fc.array(step, { minLength: 5, maxLength: 30 }),
        (policy, cap, steps) => {
          const q = createEventQueue<ExitRecord>(cap, policy);
          let produced = 0, next = 1;
          const check = (items: QueueItem<ExitRecord>[]) => {
            for (const item of items) {
              if (item.kind === "exit") {
                expect(item.seq).toBe(next);
                expect(item.record.pid).toBe(item.seq); // the record pushed with this seq
                next++;
              } else {
                expect(item.first).toBe(next);
                next = item.last + 1;
              }
            }
          };
          for (const s of steps) {
            if ("push" in s) { for (let i = 0; i < s.push; i++) q.push(++produced, rec(produced)); }
            else if ("kernel" in s) q.pushLoss(produced + 1, produced += s.kernel, "kernel-overflow", 0);
            else check(q.take(s.take));
            expect(q.depth).toBeLessThanOrEqual(cap);
          }
          check(q.take(Infinity));
          expect(next).toBe(produced + 1);
          expect(q.length).toBe(0);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("holds no more than it has queued while it drops its oldest and nothing takes (drop-oldest, and another principal taking room)", () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const live = () => (gc(), gc(), process.memoryUsage().heapUsed);
    const record = rec(1); // one record for every exit: only the queue's own slots grow
    const full = createEventQueue<ExitRecord>(10, "drop-oldest"), given = createEventQueue<ExitRecord>(1 << 20);
    const before = live();
    for (let s = 1; s <= 300_000; s++) {
      full.push(s, record);
      given.push(s, record);
      given.dropBytes(1); // another principal takes the room of one exit at a time
    }
    const grown = live() - before;
    expect({ full: full.length, given: given.length, drops: full.drops, taken: given.budgetDrops }).toEqual({
      full: 11, // ten exits after one marker
      given: 1, // one marker
      drops: 300_000 - 10,
      taken: 300_000,
    });
    // Each dropped exit's slots were cut off, not kept behind the head: 300,000 of them in three arrays took 7+ MB.
    expect(grown).toBeLessThan(1024 * 1024);
  });

  it("lets go of the records it handed out, drained or not", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const q = createEventQueue<ExitRecord>(8192);
    const refs: WeakRef<ExitRecord>[] = [];
    const push = (n: number) => {
      for (let i = 0; i < n; i++) {
        const r = rec(refs.length + 1);
        refs.push(new WeakRef(r));
        q.push(refs.length, r);
      }
    };
    // A WeakRef holds its target until the job that made it ends: collect after a turn.
    const alive = async () => {
      await new Promise((r) => setTimeout(r, 0));
      gc();
      return refs.flatMap((r, i) => (r.deref() === undefined ? [] : [i + 1]));
    };
    push(3000);
    q.take(2000); // the taken slots are cut off: 1,000 stay
    q.take(999);
    expect(await alive()).toEqual([3000]);
    push(500);
    q.take(501); // drained
    push(10);
    q.take(4); // six stay queued
    expect(await alive()).toEqual([3505, 3506, 3507, 3508, 3509, 3510]);
  });
});
