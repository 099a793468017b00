/**
 * The listener core on its own: no socket, no protobuf. Records are plain
 * objects and what a listener retains of each is a string, so resume, ring
 * wrap and loss-marker trimming are checked directly.
 */
import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ListenerNotFoundError, SeqOutOfRangeError } from "../src/core/errors.ts";
import type { QueueItem } from "../src/core/event-queue.ts";
import { COUNTED_RANGE_BYTES } from "../src/core/listener-options.ts";
import { Listener } from "../src/core/listener.ts";
import { resolveLimits } from "../src/core/limits.ts";
import { createRegistry, type RegistryMemory } from "../src/core/registry.ts";
import { RETAINED_SLOT_BYTES, Retention, type StreamItem } from "../src/core/retention.ts";
import { createMemoryBudget, unbudgeted } from "../src/core/budget.ts";
import { subscribe } from "../src/core/subscription.ts";
import { SeqRanges } from "../src/core/_seq-ranges.ts";
import { manualFeed as createManualFeed, replayAll } from "./helpers.ts";

interface Rec {
  readonly cpu: number;
  readonly n: number;
}
const rec = (n: number, cpu = 0): Rec => ({ cpu, n });
const retain = (r: Rec) => `payload ${r.n}`;
const listener = (capacity: number) =>
  new Listener<Rec, string>({ id: "l", capacity, policy: "drop-newest", ephemeral: false, owner: "t", now: 0, retain });
const show = (items: readonly StreamItem<Rec, string>[]) =>
  items.map((i) =>
    i.kind === "lost"
      ? `lost ${i.first}-${i.last} ${i.reason}`
      : i.kind === "retained"
      ? `${i.seq}:${i.payload}`
      : `${i.seq}`
  );
// Each step as text: "open", a batch's items joined (see show), "hb".
const encode = {
  open: () => "open",
  batch: (i: readonly StreamItem<Rec, string>[]) => show(i).join(","),
  heartbeat: () => "hb",
};

/** A feed the test drives by hand (helpers.ts), of this file's records. */
const manualFeed = (nbits?: number) => createManualFeed<Rec>(nbits);
describe("retention", () => {
  it("keeps the last `capacity` items as payloads, oldest first, across ring wraps", () => {
    const r = new Retention<Rec, string>(3, retain);
    for (let s = 1; s <= 7; s++) r.push({ kind: "exit", seq: s, record: rec(s * 10) });
    expect(r.size).toBe(3);
    expect(show(r.after(0))).toEqual(["5:payload 50", "6:payload 60", "7:payload 70"]);
    expect(show(r.after(6))).toEqual(["7:payload 70"]);
    expect(show(r.after(7))).toEqual([]);
  });

  it("trims a loss marker that straddles the resume point", () => {
    const r = new Retention<Rec, string>(8, retain);
    r.push({ kind: "exit", seq: 1, record: rec(1) });
    r.push({ kind: "lost", first: 2, last: 9, reason: "subscriber-overflow", cpu: -1 });
    r.push({ kind: "exit", seq: 10, record: rec(10) });
    expect(show(r.after(4))).toEqual(["lost 5-9 subscriber-overflow", "10:payload 10"]);
    expect(show(r.after(1))).toEqual(["lost 2-9 subscriber-overflow", "10:payload 10"]);
  });

  it("keeps byte-view payloads as buffer, offset and length, not the views (no object per retained exit)", () => {
    // Views into one shared slab, as the server's Exit bodies are; 40 of them wrap a ring of 16 slots.
    const slab = new Uint8Array(4096).map((_, i) => i & 0xff);
    const views = new Map<number, Uint8Array>();
    const view = (x: Rec) =>
      views.get(x.n) ?? views.set(x.n, slab.subarray(x.n * 7, x.n * 7 + 5 + (x.n % 4))).get(x.n)!;
    const r = new Retention<Rec, Uint8Array>(16, view);
    for (let s = 1; s <= 40; s++) r.push({ kind: "exit", seq: s, record: rec(s) });
    r.push({ kind: "lost", first: 41, last: 41, reason: "subscriber-overflow", cpu: 0 });
    const replayed = r.after(0);
    expect(replayed.map((i) => (i.kind === "retained" ? i.seq : "lost"))).toEqual([
      ...Array.from({ length: 15 }, (_, k) => 26 + k),
      "lost",
    ]);
    for (const item of replayed) {
      if (item.kind !== "retained") continue;
      const original = views.get(item.seq)!;
      // A new view of the same bytes in the same buffer: the retention did not hold the original view.
      expect(item.payload).not.toBe(original);
      expect(item.payload.buffer).toBe(slab.buffer);
      expect([item.payload.byteOffset, item.payload.byteLength]).toEqual([original.byteOffset, original.byteLength]);
      expect(item.payload).toEqual(original);
    }
  });

  it("takes a view's buffer from payloadBuffer when given, and asks the view when it says undefined", () => {
    const a = new Uint8Array(64).map((_, i) => i), b = new Uint8Array(64).map((_, i) => 100 + i);
    const viewOf = (x: Rec) => (x.n % 2 === 0 ? a : b).subarray(x.n, x.n + 3);
    const asked: number[] = [];
    const r = new Retention<Rec, Uint8Array>(8, viewOf, {
      account: unbudgeted(),
      sizeOfPayload: () => 0,
      // Even records: the buffer from the record's side (as the server's Exit bodies give it); odd: left to the view.
      payloadBuffer: (x) => (asked.push(x.n), x.n % 2 === 0 ? a.buffer : undefined),
    });
    for (let s = 1; s <= 6; s++) r.push({ kind: "exit", seq: s, record: rec(s) });
    expect(asked).toEqual([1, 2, 3, 4, 5, 6]);
    for (const item of r.after(0)) {
      if (item.kind !== "retained") continue;
      expect(item.payload.buffer).toBe((item.seq % 2 === 0 ? a : b).buffer);
      expect([...item.payload]).toEqual([...viewOf(rec(item.seq))]);
    }
  });

  it("keeps as themselves the views a replay could not remake: a Buffer, a view of a resizable buffer", () => {
    // ES2024's resizable ArrayBuffer (V8 has it; this project's TypeScript lib does not declare the option yet).
    const Resizable = ArrayBuffer as unknown as new (length: number, o: { maxByteLength: number }) => ArrayBuffer;
    const resizable = new Resizable(16, { maxByteLength: 64 });
    const payloads: Uint8Array[] = [
      Buffer.from([1, 2, 3]),
      new Uint8Array(resizable, 2, 4).fill(9),
      new Uint8Array([7, 8]),
    ];
    const r = new Retention<Rec, Uint8Array>(4, (x) => payloads[x.n - 1]!);
    for (let s = 1; s <= 3; s++) r.push({ kind: "exit", seq: s, record: rec(s) });
    const kept = r.after(0).map((i) => (i.kind === "retained" ? i.payload : undefined));
    expect(kept[0]).toBe(payloads[0]); // the Buffer itself, not a plain view of its bytes
    expect(kept[1]).toBe(payloads[1]); // the view itself: its buffer may shrink under an offset and length
    expect(kept[2]).not.toBe(payloads[2]); // a plain view: remade from buffer, offset and length
    expect(kept[2]).toEqual(payloads[2]);
  });

  it("computes each payload once, when the item is retained", () => {
    let calls = 0;
    const r = new Retention<Rec, string>(2, (x) => `${++calls}:${x.n}`);
    r.push({ kind: "exit", seq: 1, record: rec(1) });
    r.after(0);
    r.after(0);
    expect(calls).toBe(1);
  });

  it("keeps each byte view's bytes when a wrapped ring grows (its slots rotated)", () => {
    const slab = new Uint8Array(256).map((_, i) => i);
    const r = new Retention<Rec, Uint8Array>(64, (x) => slab.subarray(x.n, x.n + 1 + (x.n % 3)));
    for (let s = 1; s <= 16; s++) r.push({ kind: "exit", seq: s, record: rec(s) });
    for (let k = 0; k < 3; k++) r.evictOldest(); // the oldest slot is now 3: the ring has not wrapped
    for (let s = 17; s <= 20; s++) r.push({ kind: "exit", seq: s, record: rec(s) }); // wraps, then grows
    const kept = r.after(0);
    expect(kept.map((i) => (i.kind === "retained" ? i.seq : 0))).toEqual(Array.from({ length: 17 }, (_, k) => 4 + k));
    for (const i of kept) {
      if (i.kind === "retained") expect([...i.payload]).toEqual([...slab.subarray(i.seq, i.seq + 1 + (i.seq % 3))]);
    }
  });

  it("keeps the newest items, each payload's bytes intact, with byte views and other payloads mixed, under a budget", () => {
    // Evictions by the budget, sheds and growth interleave, so the ring is rotated (#linearize) with views in it.
    const slab = new Uint8Array(1 << 16).map((_, i) => (i * 7) & 0xff);
    type Payload = Uint8Array | string;
    const payloadOf = (
      x: Rec,
    ): Payload => (x.n % 3 === 0 ? `s${x.n}` : slab.subarray(x.n % 5000, (x.n % 5000) + 1 + (x.n % 9)));
    const same = (
      a: Payload,
      b: Payload,
    ) => (typeof a === "string" ? a === b : typeof b !== "string" && a.join() === b.join());
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 200, max: 4000 }),
        fc.array(fc.oneof(fc.constant("exit"), fc.constant("lost"), fc.constant("shed")), { maxLength: 200 }),
        (cap, limit, ops) => {
          const budget = createMemoryBudget({ limit });
          const r = new Retention<Rec, Payload>(cap, payloadOf, {
            account: budget.open("t"),
            sizeOfPayload: (p) => (typeof p === "string" ? 20 : 10 + p.byteLength),
          });
          const model: QueueItem<Rec>[] = [];
          let seq = 0;
          for (const op of ops) {
            if (op === "shed") {
              r.shed(limit / 2);
              continue;
            }
            const item: QueueItem<Rec> = op === "lost"
              ? { kind: "lost", first: seq + 1, last: seq + 1, reason: "kernel-overflow", cpu: 1 }
              : { kind: "exit", seq: seq + 1, record: rec(seq + 1) };
            seq++;
            r.push(item);
            model.push(item);
          }
          const kept = r.after(0);
          expect(kept.length).toBe(r.size);
          expect(r.size).toBeLessThanOrEqual(cap);
          expect(budget.used).toBe(r.bytes);
          // Always the newest items, without gaps, each with its own bytes.
          const newest = model.slice(model.length - kept.length);
          for (const [k, item] of kept.entries()) {
            const want = newest[k]!;
            expect(item.kind === "lost" ? "lost" : item.seq).toBe(want.kind === "lost" ? "lost" : want.seq);
            if (item.kind === "retained" && want.kind === "exit") {
              expect(same(item.payload, payloadOf(want.record))).toBe(true);
            }
          }
        },
      ),
    );
  });

  it("matches a plain array model for any pushes and resume points", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.boolean(), { maxLength: 120 }),
        fc.nat(130),
        (cap, kinds, at) => {
          const r = new Retention<Rec, string>(cap, retain);
          const model: QueueItem<Rec>[] = [];
          let seq = 0;
          for (const lossy of kinds) {
            const item: QueueItem<Rec> = lossy
              ? { kind: "lost", first: seq + 1, last: seq + 2, reason: "kernel-overflow", cpu: 1 }
              : { kind: "exit", seq: seq + 1, record: rec(seq + 1) };
            seq += lossy ? 2 : 1;
            r.push(item);
            model.push(item);
          }
          const expected = model.slice(-cap).filter((i) => (i.kind === "lost" ? i.last : i.seq) > at)
            .map((i) => (i.kind === "lost" && i.first <= at ? { ...i, first: at + 1 } : i));
          expect(show(r.after(at))).toEqual(
            show(
              expected.map((
                i,
              ) => (i.kind === "exit" ? { kind: "retained", seq: i.seq, cpu: 0, payload: retain(i.record) } : i)),
            ),
          );
        },
      ),
    );
  });
});

describe("listener resume", () => {
  it("replays what was handed out after the seq, and reports what is no longer retained as RETENTION loss once", () => {
    const l = listener(2);
    for (let n = 1; n <= 5; n++) {
      l.deliver(rec(n));
      l.take(10);
    } // seqs 1-5 handed out; 4 and 5 retained
    expect(show(replayAll(l, 1))).toEqual(["lost 2-3 retention", "4:payload 4", "5:payload 5"]);
    expect(l.lost.retention).toBe(2);
    // The same client resuming again from the same point is not new loss.
    expect(show(replayAll(l, 1))).toEqual(["lost 2-3 retention", "4:payload 4", "5:payload 5"]);
    expect(l.lost.retention).toBe(2);
    // Resuming from further back reports the wider gap but counts only the seq not counted before.
    replayAll(l, 0);
    expect(l.lost.retention).toBe(3);
  });

  it("counts each seq as RETENTION loss at most once over any resumes", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 5 }), fc.nat(60)), { maxLength: 30 }), (steps) => {
        const l = listener(4);
        const reported = new Set<number>();
        for (const [n, back] of steps) {
          for (let i = 0; i < n; i++) {
            l.deliver(rec(i));
            l.take(10);
          }
          const at = Math.max(0, l.handedOut - back);
          for (const item of replayAll(l, at)) {
            if (item.kind === "lost") { for (let s = item.first; s <= item.last; s++) reported.add(s); }
          }
          expect(l.lost.retention).toBe(reported.size);
        }
      }),
    );
  });

  it("replays a batch at a time what a whole replay gives, counting RETENTION loss the same", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.oneof(fc.constant("exit" as const), fc.constant("kernel" as const)), {
          minLength: 1,
          maxLength: 120,
        }),
        fc.nat(130),
        fc.integer({ min: 1, max: 7 }),
        (capacity, steps, back, max) => {
          const make = () => {
            const l = listener(capacity);
            for (const step of steps) {
              if (step === "exit") l.deliver(rec(1));
              else l.lose(2, "kernel-overflow", 0);
              l.take(5);
            }
            return l;
          };
          const whole = make(), paged = make();
          const at = Math.max(0, whole.handedOut - back);
          const next = paged.replayFrom(at), got: StreamItem<Rec, string>[] = [];
          for (let batch = next(max); batch.length > 0; batch = next(max)) {
            expect(batch.length).toBeLessThanOrEqual(max);
            got.push(...batch);
          }
          expect(show(got)).toEqual(show(replayAll(whole, at)));
          expect(paged.lost.retention).toBe(whole.lost.retention);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("reports exits evicted while a replay runs as RETENTION loss, and stops where it began", () => {
    const l = listener(4);
    for (let n = 1; n <= 4; n++) l.deliver(rec(n));
    l.take(10); // seqs 1-4 handed out and retained
    const next = l.replayFrom(0);
    expect(show(next(2))).toEqual(["1:payload 1", "2:payload 2"]);
    for (let n = 5; n <= 7; n++) l.deliver(rec(n));
    l.take(10); // 5-7 handed out (not part of this replay): 1-3 evicted, 3 before the replay reached it
    expect(show(next(3))).toEqual(["lost 3-3 retention", "4:payload 4"]);
    expect(next(2)).toEqual([]);
    expect(l.lost.retention).toBe(1);
  });

  it("counts seqs in ranges as a set would, however the ranges arrive", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(200), fc.nat(12)), { minLength: 1, maxLength: 200 }), (adds) => {
        const ranges = new SeqRanges(), model = new Set<number>();
        for (const [first, len] of adds) {
          let fresh = 0;
          for (let s = first; s <= first + len; s++) if (!model.has(s)) (model.add(s), fresh++);
          expect(ranges.add(first, first + len)).toBe(fresh);
        }
        const runs = [...model].sort((a, b) => a - b).filter((s) => !model.has(s - 1)).length;
        expect(ranges.size).toBe(runs); // disjoint and merged: one range per run of seqs
      }),
      { numRuns: 300 },
    );
  });

  it("charges the ranges of seqs it counted as RETENTION loss to its account", () => {
    const budget = createMemoryBudget({ limit: 10 ** 9 });
    const account = budget.open("t");
    const l = new Listener<Rec, string>({
      id: "l",
      capacity: 2,
      policy: "drop-newest",
      ephemeral: false,
      owner: "t",
      now: 0,
      retain,
      account,
    });
    for (let n = 1; n <= 10; n++) (l.deliver(rec(n)), l.take(1)); // 9 and 10 retained
    const held = () => account.bytes;
    const before = held();
    replayAll(l, 5); // counts 6-8: one range
    expect(held() - before).toBe(COUNTED_RANGE_BYTES);
    replayAll(l, 2); // 3-8: merged into the same range
    expect(held() - before).toBe(COUNTED_RANGE_BYTES);
    account.close();
    expect(budget.used).toBe(0);
  });

  it("RETENTION loss a replay counts after its listener's removal reaches the server's totals", () => {
    const feed = manualFeed();
    const reg = createRegistry<Rec, string>({ feed, retain });
    const l = reg.create([0], { buffer: 10, policy: "drop-newest", ephemeral: false, owner: "t" });
    for (let n = 1; n <= 10; n++) feed.sink.exit(rec(n));
    l.take(10);
    const next = l.replayFrom(0);
    expect(show(next(2))).toEqual(["1:payload 1", "2:payload 2"]);
    reg.remove(l, "deregistered"); // its totals are taken now; it retains nothing more
    expect(show(next(5))).toEqual(["lost 3-10 retention"]);
    expect(reg.stats().lost.retention).toBe(8);
  });

  it("checkResume refuses a seq never sent and changes nothing", () => {
    const l = listener(4);
    l.deliver(rec(1));
    l.take(1);
    expect(() => l.checkResume(2n)).toThrow(SeqOutOfRangeError);
    expect(() => l.checkResume(2n ** 64n - 1n)).toThrow(/after_seq 18446744073709551615 is beyond/);
    expect(() => l.checkResume(1n)).not.toThrow();
    expect({ produced: l.produced, handedOut: l.handedOut, depth: l.queue.depth }).toEqual({
      produced: 1,
      handedOut: 1,
      depth: 0,
    });
  });

  it("a filter decides before a seq is taken: filtered records are not loss", () => {
    const l = listener(8);
    l.filter = (r) => r.n % 2 === 0;
    for (let n = 1; n <= 6; n++) l.deliver(rec(n));
    expect(show(l.take(10))).toEqual(["1", "2", "3"]);
    expect(l.produced).toBe(3);
  });
});

describe("registry", () => {
  it("dispatches by CPU, watches only CPUs with listeners, and reaps after the lease", () => {
    let now = 0;
    const feed = manualFeed();
    const reg = createRegistry<Rec, string>({ feed, retain, limits: { leaseMs: 1000 }, now: () => now });
    const a = reg.create([0, 1], { buffer: 4, policy: "drop-newest", ephemeral: false, owner: "t" });
    const b = reg.create([1], { buffer: 4, policy: "drop-newest", ephemeral: false, owner: "t" });
    expect([...feed.watched].sort()).toEqual([0, 1]);
    feed.sink.exit(rec(1, 0));
    feed.sink.exit(rec(2, 1));
    feed.sink.kernelLoss(1, 3);
    expect([a.produced, b.produced]).toEqual([5, 4]);
    expect(reg.stats()).toMatchObject({ listeners: 2, queued: 3, deepestQueue: 2, lost: { "kernel-overflow": 6 } });
    now = 999;
    expect(reg.reap()).toBe(0);
    now = 1000;
    expect(reg.reap()).toBe(2);
    expect(feed.watched.size).toBe(0);
    // Losses of removed listeners stay in the totals.
    expect(reg.stats().lost["kernel-overflow"]).toBe(6);
  });

  it("counts records the source could not pass on as their own reason, on the listeners of their CPU", () => {
    const feed = manualFeed();
    const reg = createRegistry<Rec, string>({ feed, retain });
    const a = reg.create([0, 1], { buffer: 4, policy: "drop-newest", ephemeral: false, owner: "t" });
    const b = reg.create([1], { buffer: 4, policy: "drop-newest", ephemeral: false, owner: "t" });
    feed.sink.sourceLoss(0, 2);
    expect([a.lost["source-error"], b.lost["source-error"], a.lost["kernel-overflow"]]).toEqual([2, 0, 0]);
    expect(a.take(10)).toEqual([{ kind: "lost", first: 1, last: 2, reason: "source-error", cpu: 0 }]);
    expect(reg.stats().lost).toMatchObject({ "source-error": 2, "kernel-overflow": 0 });
  });

  it("refuses a listener past maxListeners before changing anything", () => {
    const feed = manualFeed();
    const reg = createRegistry<Rec, string>({ feed, retain, limits: { maxListeners: 1 } });
    reg.create([0], { buffer: 0, policy: "drop-newest", ephemeral: false, owner: "t" });
    expect(() => reg.create([1], { buffer: 0, policy: "drop-newest", ephemeral: false, owner: "t" })).toThrow(
      /limit of 1 listeners/,
    );
    expect([...feed.watched]).toEqual([0]);
    expect(reg.stats().listeners).toBe(1);
  });

  it("close ends subscriptions as shutting down and closes the feed", async () => {
    const feed = manualFeed();
    const reg = createRegistry<Rec, string>({ feed, retain });
    const l = reg.create([2], { buffer: 4, policy: "drop-newest", ephemeral: false, owner: "t" });
    const sub = subscribe(reg, l, { maxBatch: 10, heartbeatMs: 60_000, signal: new AbortController().signal, encode });
    expect((await sub.next()).value).toBe("open");
    feed.sink.exit(rec(7, 2));
    expect((await sub.next()).value).toBe("1");
    const next = sub.next();
    await reg.close();
    await expect(next).rejects.toThrow(/shutting down/);
    expect(feed.closed).toBe(true);
  });
});

describe("subscription", () => {
  // A registry over a manual feed, and one listener on CPU 0 with a queue of 8.
  const listenerOnCpu0 = () => {
    const feed = manualFeed();
    const reg = createRegistry<Rec, string>({ feed, retain });
    return { feed, reg, l: reg.create([0], { buffer: 8, policy: "drop-newest", ephemeral: false, owner: "t" }) };
  };

  it("sends the replay first, then the queue in batches of at most maxBatch, and heartbeats when idle", async () => {
    const { feed, reg, l } = listenerOnCpu0();
    for (let n = 1; n <= 3; n++) feed.sink.exit(rec(n));
    const ctl = new AbortController();
    const old: StreamItem<Rec, string>[] = [{ kind: "retained", seq: 0, cpu: 0, payload: "old" }];
    const replay = (max: number) => old.splice(0, max);
    const sub = subscribe(reg, l, { maxBatch: 2, heartbeatMs: 20, signal: ctl.signal, encode, replay });
    const got: string[] = [];
    for (let i = 0; i < 5; i++) got.push((await sub.next()).value as string);
    expect(got).toEqual(["open", "0:old", "1,2", "3", "hb"]);
    ctl.abort();
    expect((await sub.next()).done).toBe(true);
    expect(l.attached).toBe(false);
  });

  // A listener whose budget is full, so that each exit queued evicts retained ones.
  const tight = () => {
    const budget = createMemoryBudget({ limit: 10 * RETAINED_SLOT_BYTES + 10 * 30 + 200 }); // slots, payloads, a queue
    const l = new Listener<Rec, string>({
      id: "l",
      capacity: 10,
      policy: "drop-newest",
      ephemeral: false,
      owner: "t",
      now: 0,
      retain,
      account: budget.open("t"),
      sizeOfPayload: () => 30,
    });
    for (let n = 1; n <= 10; n++) (l.deliver(rec(n), 10), l.take(1));
    return l;
  };
  const registry = { now: () => 0, remove: () => {} };
  // A stream replaying `l` after `seq`, two items a batch.
  const replaying = (l: Listener<Rec, string>, seq: number, signal = new AbortController().signal) =>
    subscribe(registry, l, { maxBatch: 2, heartbeatMs: 1000, signal, encode, replay: l.replayFrom(seq) });

  it("a replay cut short by a takeover makes no batch after it, and counts no RETENTION loss for one", async () => {
    const l = tight();
    const a = replaying(l, 0);
    expect([(await a.next()).value, (await a.next()).value]).toEqual(["open", "1:payload 1,2:payload 2"]);
    for (let n = 11; n <= 16; n++) l.deliver(rec(n), 10); // each evicts retained exits
    const ctl = new AbortController();
    const b = replaying(l, 10, ctl.signal);
    await b.next();
    await expect(a.next()).rejects.toThrow(/another stream/);
    expect(l.lost.retention).toBe(0);
    ctl.abort();
  });

  it("says it was taken over even if its call was aborted since (its deadline passed)", async () => {
    const { reg, l } = listenerOnCpu0();
    const ctl = new AbortController();
    const a = subscribe(reg, l, { maxBatch: 2, heartbeatMs: 1000, signal: ctl.signal, encode });
    await a.next();
    const other = new AbortController();
    await subscribe(reg, l, { maxBatch: 2, heartbeatMs: 1000, signal: other.signal, encode }).next(); // takes over
    ctl.abort();
    await expect(a.next()).rejects.toThrow(/another stream/);
    other.abort();
  });

  it("says its listener was removed even if its call was aborted since, queue unsent", async () => {
    const { feed, reg, l } = listenerOnCpu0();
    const ctl = new AbortController();
    const a = subscribe(reg, l, { maxBatch: 2, heartbeatMs: 1000, signal: ctl.signal, encode });
    await a.next();
    feed.sink.exit(rec(1));
    reg.remove(l, "deregistered");
    ctl.abort();
    await expect(a.next()).rejects.toBeInstanceOf(ListenerNotFoundError);
  });

  it("a replay whose listener is removed ends with the rest as RETENTION loss, then the queue, then NOT_FOUND", async () => {
    const l = tight();
    const a = replaying(l, 0);
    expect([(await a.next()).value, (await a.next()).value]).toEqual(["open", "1:payload 1,2:payload 2"]);
    l.deliver(rec(11), 0);
    l.close("deregistered", "removed");
    l.retire(true);
    const got: string[] = [];
    await expect((async () => {
      for await (const m of a) got.push(m);
    })()).rejects.toThrow(/deregistered/);
    expect(got).toEqual(["lost 3-10 retention", "11"]);
    expect(l.lost.retention).toBe(8);
  });

  it("keeps one heartbeat timer across busy waits, and heartbeats heartbeatMs after the last event", async () => {
    const { feed, reg, l } = listenerOnCpu0();
    const ctl = new AbortController();
    const heartbeatMs = 150;
    const sub = subscribe(reg, l, { maxBatch: 8, heartbeatMs, signal: ctl.signal, encode });
    expect((await sub.next()).value).toBe("open");
    const timers = vi.spyOn(globalThis, "setTimeout");
    const started = performance.now();
    // 40 waits, each ended by an event at once, with pauses of 40 ms: 200 ms in all, longer than the heartbeat.
    for (let n = 1; n <= 40; n++) {
      const next = sub.next();
      setImmediate(() => feed.sink.exit(rec(n)));
      expect((await next).value).toBe(String(n));
      if (n % 8 === 0) await new Promise((r) => setTimeout(r, 40));
    }
    const elapsed = performance.now() - started;
    const armed = timers.mock.calls.filter(([fn]) => fn.name === "#expire").length; // the subscription's own
    timers.mockRestore();
    // The first wait's timer, and a re-arm each time it fired while events still came: one per heartbeat period.
    expect(armed).toBeGreaterThanOrEqual(1);
    expect(armed).toBeLessThanOrEqual(2 + Math.floor(elapsed / heartbeatMs));
    const lastEventAt = performance.now();
    expect((await sub.next()).value).toBe("hb");
    expect(performance.now() - lastEventAt).toBeGreaterThanOrEqual(heartbeatMs - 5);
    ctl.abort();
    expect((await sub.next()).done).toBe(true);
  });

  it("a second subscription takes the listener over; the first ends with StreamTakenOverError", async () => {
    const { reg, l } = listenerOnCpu0();
    const encode = { open: () => "open", batch: () => "batch", heartbeat: () => "hb" };
    const opts = { maxBatch: 2, heartbeatMs: 60_000, encode };
    const first = subscribe(reg, l, { ...opts, signal: new AbortController().signal });
    await first.next();
    const waiting = first.next();
    const second = subscribe(reg, l, { ...opts, signal: new AbortController().signal });
    await second.next();
    await expect(waiting).rejects.toThrow(/another stream subscribed/);
  });

  it("an ephemeral listener taken over lives on with the stream that has it", async () => {
    const feed = manualFeed();
    const reg = createRegistry<Rec, string>({ feed, retain });
    const l = reg.create([0], { buffer: 8, policy: "drop-newest", ephemeral: true, owner: "t" });
    const encode = {
      open: () => "open",
      batch: (items: readonly unknown[]) => `batch of ${items.length}`,
      heartbeat: () => "hb",
    };
    const opts = { maxBatch: 8, heartbeatMs: 60_000, encode };
    const first = subscribe(reg, l, { ...opts, signal: new AbortController().signal });
    await first.next();
    const waiting = first.next();
    const ctl = new AbortController();
    const second = subscribe(reg, l, { ...opts, signal: ctl.signal });
    await second.next();
    await expect(waiting).rejects.toThrow(/another stream subscribed/);
    expect(reg.listeners()).toContain(l); // the first stream's end did not remove it
    feed.sink.exit(rec(1));
    expect((await second.next()).value).toBe("batch of 1");
    ctl.abort();
    await second.next();
    expect(reg.listeners()).not.toContain(l); // it dies with the stream that had it
  });
});

// A transport's sink the test drives (StreamSink): it records what it is sent and answers `room`; drain() calls back.
function fakeSink(starts = true) {
  let waiting: (() => void)[] = [];
  const sink = {
    sent: [] as string[],
    room: true,
    start: () => Promise.resolve(starts),
    send: (m: string) => (sink.sent.push(m), sink.room),
    whenDrained: (fn: () => void) => void waiting.push(fn),
    drain: () => {
      const fns = waiting;
      waiting = [];
      for (const fn of fns) fn();
    },
  };
  return sink;
}

describe("subscription with a sink", () => {
  const setup = () => {
    const feed = manualFeed();
    const reg = createRegistry<Rec, string>({ feed, retain });
    const l = reg.create([0], { buffer: 8, policy: "drop-newest", ephemeral: false, owner: "t" });
    return { feed, reg, l, ctl: new AbortController(), sink: fakeSink() };
  };
  const settle = () => new Promise((r) => setTimeout(r, 5));

  it("yields the opening message, then sends the replay, batches and heartbeats to the sink, in order", async () => {
    const { feed, reg, l, ctl, sink } = setup();
    for (let n = 1; n <= 3; n++) feed.sink.exit(rec(n));
    const old: StreamItem<Rec, string>[] = [{ kind: "retained", seq: 0, cpu: 0, payload: "old" }];
    const replay = (max: number) => old.splice(0, max);
    const sub = subscribe(reg, l, { maxBatch: 2, heartbeatMs: 20, signal: ctl.signal, encode, replay, sink });
    expect((await sub.next()).value).toBe("open");
    const rest = sub.next(); // the generator yields nothing more until it ends
    await vi.waitFor(() => expect(sink.sent.slice(0, 4)).toEqual(["0:old", "1,2", "3", "hb"]));
    feed.sink.exit(rec(4));
    await vi.waitFor(() => expect(sink.sent.slice(4).filter((m) => m !== "hb")).toEqual(["4"]));
    ctl.abort();
    expect((await rest).done).toBe(true);
    expect(l.attached).toBe(false);
  });

  it("sends nothing more until the sink drains, taking one batch ahead meanwhile, as the iterators did", async () => {
    const { feed, reg, l, ctl, sink } = setup();
    const sub = subscribe(reg, l, { maxBatch: 2, heartbeatMs: 60_000, signal: ctl.signal, encode, sink });
    await sub.next();
    void sub.next();
    sink.room = false;
    for (let n = 1; n <= 3; n++) feed.sink.exit(rec(n));
    await vi.waitFor(() => expect(sink.sent).toEqual(["1,2"]));
    feed.sink.exit(rec(4));
    await settle();
    expect(sink.sent).toEqual(["1,2"]);
    sink.room = true;
    sink.drain();
    await vi.waitFor(() => expect(sink.sent).toEqual(["1,2", "3", "4"])); // 3 was taken while the sink drained
    ctl.abort();
  });

  it("an abort or a takeover cuts a wait for the sink short", async () => {
    const { feed, reg, l, ctl, sink } = setup();
    sink.room = false;
    const sub = subscribe(reg, l, { maxBatch: 2, heartbeatMs: 60_000, signal: ctl.signal, encode, sink });
    await sub.next();
    const ended = sub.next();
    feed.sink.exit(rec(1));
    await vi.waitFor(() => expect(sink.sent).toEqual(["1"]));
    ctl.abort();
    expect((await ended).done).toBe(true);
    expect(l.attached).toBe(false);

    const other = setup();
    other.sink.room = false;
    const a = subscribe(other.reg, other.l, {
      maxBatch: 2,
      heartbeatMs: 60_000,
      signal: other.ctl.signal,
      encode,
      sink: other.sink,
    });
    await a.next();
    const taken = a.next();
    other.feed.sink.exit(rec(1));
    await vi.waitFor(() => expect(other.sink.sent).toEqual(["1"]));
    const ctl2 = new AbortController();
    await subscribe(other.reg, other.l, { maxBatch: 2, heartbeatMs: 60_000, signal: ctl2.signal, encode }).next();
    await expect(taken).rejects.toThrow(/another stream/);
    ctl2.abort();
  });

  it("a removed listener's queue goes to the sink, then its end is raised through the generator", async () => {
    const { feed, reg, l, ctl, sink } = setup();
    const sub = subscribe(reg, l, { maxBatch: 2, heartbeatMs: 60_000, signal: ctl.signal, encode, sink });
    await sub.next();
    const ended = sub.next();
    sink.room = false;
    for (let n = 1; n <= 3; n++) feed.sink.exit(rec(n));
    await vi.waitFor(() => expect(sink.sent).toEqual(["1,2"]));
    reg.remove(l, "deregistered");
    await settle();
    expect(sink.sent).toEqual(["1,2"]); // the removal does not send past the transport's backpressure
    sink.room = true;
    sink.drain();
    await expect(ended).rejects.toThrow(ListenerNotFoundError);
    expect(sink.sent).toEqual(["1,2", "3"]);
    ctl.abort();
  });

  it("keeps to the generator when the sink cannot start", async () => {
    const { feed, reg, l, ctl } = setup();
    const sink = fakeSink(false);
    feed.sink.exit(rec(1));
    const sub = subscribe(reg, l, { maxBatch: 2, heartbeatMs: 60_000, signal: ctl.signal, encode, sink });
    expect([(await sub.next()).value, (await sub.next()).value]).toEqual(["open", "1"]);
    expect(sink.sent).toEqual([]);
    ctl.abort();
  });
});

// A listener whose deliver() throws (a server bug) must not cost the other listeners of its CPU their records, and
// its own account stays exact: every seq 1..produced covered once, and received + lost = produced.
describe("a listener that throws while taking a record", () => {
  afterEach(() => vi.restoreAllMocks());

  const open = (
    reg: ReturnType<typeof createRegistry<Rec, string>>,
    policy: "drop-newest" | "drop-oldest" = "drop-newest",
    buffer = 8,
  ) => reg.create([0], { buffer, policy, ephemeral: false, owner: "t" });
  // Takes everything: the seqs 1..produced no item covers, those covered twice, and delivered + lost counters.
  function audit(l: Listener<Rec, string>) {
    const seen = new Map<number, number>();
    for (const i of l.take(1e6)) {
      const [first, last] = i.kind === "lost" ? [i.first, i.last] : [i.seq, i.seq];
      for (let s = first; s <= last; s++) seen.set(s, (seen.get(s) ?? 0) + 1);
    }
    const seqs = Array.from({ length: l.produced }, (_, k) => k + 1);
    const counted = l.delivered + Object.values(l.lost).reduce((a, b) => a + b, 0);
    return {
      produced: l.produced,
      gaps: seqs.filter((s) => !seen.has(s)),
      twice: seqs.filter((s) => seen.get(s)! > 1),
      counted,
    };
  }

  // A registry over a hand-driven feed, its delivery failures collected as [error message, failure].
  function failingRegistry(memory?: RegistryMemory<Rec, string>) {
    const feed = manualFeed();
    const failures: unknown[] = [];
    const reg = createRegistry<Rec, string>({
      feed,
      retain,
      ...(memory !== undefined && { memory }),
      onDeliveryError: (err, failure) => failures.push([(err as Error).message, failure]),
    });
    return { feed, failures, reg };
  }

  it("keeps the failure its own: the others get the record, and only it is sent a loss", () => {
    const { feed, failures, reg } = failingRegistry();
    const [a, b, c, d] = [open(reg), open(reg), open(reg), open(reg)];
    b.filter = (r) => {
      if (r.n === 2) throw new Error("filter bug");
      return true;
    };
    // d's stream wake-up throws after the record was queued: d has it, and no loss is made up for it.
    let wakes = 0;
    d.attach(() => {
      if (++wakes === 2) throw new Error("wake bug");
    }, () => {});
    for (const n of [1, 2, 3]) feed.sink.exit(rec(n, 0));
    const exits = (l: typeof a) => l.take(10).map((i) => (i.kind === "exit" ? i.record.n : `lost ${i.reason}`));
    expect(exits(a)).toEqual([1, 2, 3]);
    expect(exits(b)).toEqual([1, "lost source-error", 3]);
    expect(exits(c)).toEqual([1, 2, 3]);
    expect(exits(d)).toEqual([1, 2, 3]);
    expect([a, b, c, d].map((l) => [l.produced, l.lost["source-error"]])).toEqual([[3, 0], [3, 1], [3, 0], [3, 0]]);
    expect(reg.stats().lost["source-error"]).toBe(1);
    expect(failures).toEqual([
      ["filter bug", { listener: b.id, cpu: 0, lost: true }],
      ["wake bug", { listener: d.id, cpu: 0, lost: false }],
    ]);
  });

  it("costs no seq when the unshared copy fails (an allocation), so the record is a counted loss", () => {
    const { feed, failures, reg } = failingRegistry({
      budget: createMemoryBudget(),
      sizeOf: () => 0,
      sizeOfPayload: () => 0,
      unshare: (r) => {
        if (r.n === 1) throw new RangeError("Array buffer allocation failed");
        return { ...r };
      },
    });
    const l = open(reg);
    for (let i = 0; i < 100; i++) feed.sink.exit(rec(1000 + i, 1)); // on another CPU: l's records become sparse
    feed.sink.exit(rec(1, 0));
    feed.sink.exit(rec(2, 0));
    expect(failures).toEqual([["Array buffer allocation failed", { listener: l.id, cpu: 0, lost: true }]]);
    expect(audit(l)).toEqual({ produced: 2, gaps: [], twice: [], counted: 2 });
  });

  it("covers a seq taken inside a queue that then threw, and counts the drops it made first", () => {
    const budget = createMemoryBudget({ limit: 1_000_000 });
    const { feed, failures, reg } = failingRegistry({ budget, sizeOf: () => 0, sizeOfPayload: () => 0 });
    const l = open(reg, "drop-oldest", 2);
    // Room for two queued exits, no more, held by the listener's own principal (so no fair share makes room).
    budget.open(l.owner).charge(1_000_000 - budget.used - 2 * 80 - 8);
    feed.sink.exit(rec(1, 0));
    feed.sink.exit(rec(2, 0));
    vi.spyOn(Retention.prototype, "shed").mockImplementation(() => {
      throw new Error("shed bug");
    });
    feed.sink.exit(rec(3, 0)); // full: seq 1 dropped (its marker queued), then the charge fails and shed throws
    expect(failures).toEqual([["shed bug", { listener: l.id, cpu: 0, lost: true }]]);
    expect([l.lost["subscriber-overflow"], l.lost["source-error"]]).toEqual([1, 1]);
    expect(audit(l)).toEqual({ produced: 3, gaps: [], twice: [], counted: 3 });
  });

  it("lets neither a failing error callback nor a failing wake-up reach the source", () => {
    const feed = manualFeed();
    // What the netlink reader does with a throw from the sink: the record is lost for every listener of its CPU.
    const guarded = (r: Rec) => {
      try {
        feed.sink.exit(r);
      } catch {
        feed.sink.sourceLoss(r.cpu, 1);
      }
    };
    const reg = createRegistry<Rec, string>({
      feed,
      retain,
      onDeliveryError: () => {
        throw new Error("logger bug");
      },
    });
    const [a, b, c] = [open(reg), open(reg), open(reg)];
    b.filter = () => {
      throw new Error("filter bug");
    };
    b.attach(() => {
      throw new Error("wake bug");
    }, () => {});
    guarded(rec(1, 0));
    expect([show(a.take(10)), show(b.take(10)), show(c.take(10))]).toEqual([["1"], ["lost 1-1 source-error"], ["1"]]);
    expect([a, b, c].map((l) => l.produced)).toEqual([1, 1, 1]);
  });
});

describe("resolveLimits", () => {
  it("refuses limits past their range with RangeError, naming the limit and the range", () => {
    expect(() => resolveLimits({ leaseMs: 2 ** 31 })).toThrow(/limit leaseMs must be from 1 to 2147483647/);
    expect(() => resolveLimits({ heartbeatMs: 99 })).toThrow(/limit heartbeatMs must be from 100 to 600000/);
    expect(() => resolveLimits({ heartbeatMs: 600_001 })).toThrow(RangeError);
    expect(() => resolveLimits({ maxBatch: 0 })).toThrow(/must be a positive integer/);
    expect(resolveLimits({ leaseMs: 2 ** 31 - 1, heartbeatMs: 600_000 })).toMatchObject({ leaseMs: 2 ** 31 - 1 });
  });
});
