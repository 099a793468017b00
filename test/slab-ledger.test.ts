/**
 * What shared slabs cost listeners beyond their items' shares
 * (core/_slab-ledger.ts): each sealed slab's unpaid rest charged to its
 * holders in proportion, counted once a second from what they hold (queue,
 * batch in flight, retention), and given back once they hold nothing in it.
 */
import { describe, expect, it } from "vitest";
import { type SlabCount, SlabLedger, type SlabSizes } from "../src/core/_slab-ledger.ts";
import { createMemoryBudget } from "../src/core/budget.ts";
import { createEventQueue, QUEUED_EXIT_BYTES } from "../src/core/event-queue.ts";
import { Listener } from "../src/core/listener.ts";
import { createRegistry } from "../src/core/registry.ts";
import { subscribe } from "../src/core/subscription.ts";
import { Retention } from "../src/core/retention.ts";

/** Every slab 1,000 bytes; sealed once in `sealed`. */
function sizes(sealed: Set<object>): SlabSizes {
  return { bytesOf: () => 1000, sealed: (s: object) => sealed.has(s) };
}

/** A holder of the given items ([slab, covers]), with what it is charged. */
function holding(items: [object, number][], s: SlabSizes) {
  const h = {
    items,
    charged: 0,
    countSlabs: (count: SlabCount) => {
      for (const [slab, covers] of h.items) count(slab, covers, s);
    },
    chargeSlabs: (bytes: number) => void (h.charged = bytes),
  };
  return h;
}

describe("SlabLedger", () => {
  it("charges a sealed slab's unpaid rest to its holder, and nothing once it holds nothing there", () => {
    const slab = {}, sealed = new Set<object>(), ledger = new SlabLedger();
    const h = holding([[slab, 100], [slab, 150]], sizes(sealed));
    ledger.settle([h]);
    expect(h.charged).toBe(0); // not sealed: the source is still filling it, alive anyway
    sealed.add(slab);
    ledger.settle([h]);
    expect(h.charged).toBe(750);
    h.items = [];
    ledger.settle([h]);
    expect(h.charged).toBe(0);
  });

  it("charges a slab held by several listeners once between them, and the last one the rest", () => {
    const slab = {}, s = sizes(new Set([slab])), ledger = new SlabLedger();
    const a = holding([[slab, 100]], s), b = holding([[slab, 300]], s);
    ledger.settle([a, b]);
    expect([a.charged, b.charged]).toEqual([150, 450]); // 600 unpaid, in proportion to 100 and 300
    b.items = [];
    ledger.settle([a, b]);
    expect([a.charged, b.charged]).toEqual([900, 0]);
  });

  it("charges nothing for a slab its holders pay for between them, and adds up slabs apart", () => {
    const s1 = {}, s2 = {}, s = sizes(new Set([s1, s2])), ledger = new SlabLedger();
    const a = holding([[s1, 600], [s2, 100], [s1, 0], [s2, 100]], s), b = holding([[s1, 600]], s);
    ledger.settle([a, b]);
    expect([a.charged, b.charged]).toEqual([800, 0]); // s1 paid; s2's 800 unpaid is a's alone
  });
});

interface Rec {
  readonly cpu: number;
  readonly slab: object | undefined;
  readonly n: number;
}

describe("the queue and the retention ring", () => {
  it("a queue tells of each queued record, oldest first, past taken ones and loss markers", () => {
    const q = createEventQueue<Rec>(3, "drop-oldest");
    for (let n = 1; n <= 5; n++) q.push(n, { cpu: 0, slab: undefined, n }); // 1 and 2 dropped, as markers
    q.pushLoss(6, 6, "kernel-overflow", 0);
    q.push(7, { cpu: 0, slab: undefined, n: 7 });
    q.take(1);
    const seen: number[] = [];
    q.forEachRecord((r) => seen.push(r.n));
    expect(seen).toEqual([4, 5, 7]);
  });

  it("a ring tells of the payloads kept in part of a larger buffer, with their charges; none with a buffer of its own", () => {
    const slab = new ArrayBuffer(1000);
    const r = new Retention<Rec, Uint8Array>(
      3,
      (x) => (x.slab === undefined ? new Uint8Array(10) : new Uint8Array(slab, x.n * 10, 10)),
      { account: createMemoryBudget().open("t"), sizeOfPayload: (p) => p.byteLength * 2 },
    );
    const exit = (n: number, inSlab: boolean) => ({
      kind: "exit" as const,
      seq: n,
      record: { cpu: 0, slab: inSlab ? slab : undefined, n },
    });
    for (const [n, inSlab] of [[1, true], [2, false], [3, true], [4, true]] as const) r.push(exit(n, inSlab)); // 1 evicted
    r.push({ kind: "lost", first: 5, last: 5, reason: "kernel-overflow", cpu: 0 }); // 2 evicted
    const seen: [object, number][] = [];
    r.countSlabs((s, covers) => seen.push([s, covers]), sizes(new Set()));
    expect(seen).toEqual([[slab, 40]]); // 3 and 4, 20 each, told as one run
  });
});

describe("a retention ring's slab runs", () => {
  // The runs are kept as items come and go (core/_slab-runs.ts); at every step they must add up, buffer by buffer, to
  // what the retained payloads themselves say.
  it("add up to what the retained payloads say, through evictions, replaced slots, markers, clears and a tight budget", () => {
    const buffers = [new ArrayBuffer(400), new ArrayBuffer(400), new ArrayBuffer(400)];
    let seed = 11;
    const next = (k: number) => { // mulberry32
      let t = (seed = (seed + 0x6d2b79f5) | 0);
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) % k;
    };
    // Runs of 30 items a buffer, of 7, and alternating: the last make more runs than a ring keeps, and it walks.
    const payloadOf = (n: number): Uint8Array => {
      const b = buffers[Math.floor(n / [30, 7, 1][Math.floor(n / 1000) % 3]!) % 3]!;
      const kind = next(10);
      if (kind === 0) return new Uint8Array(8); // a buffer of its own
      if (kind === 1) return new Uint8Array(b); // all of a buffer: no slab
      return new Uint8Array(b, next(40) * 10, 1 + next(10));
    };
    const sizeOfPayload = (p: Uint8Array) => 3 * p.byteLength;
    for (const capacity of [20, 200]) {
      const r = new Retention<Rec, Uint8Array>(capacity, (x) => payloadOf(x.n), {
        account: createMemoryBudget({ limit: capacity * 125 }).open("t"),
        sizeOfPayload,
      });
      let stuck = 0;
      for (let n = 1; n <= 20_000; n++) {
        if (next(8) === 0) r.push({ kind: "lost", first: n, last: n, reason: "kernel-overflow", cpu: 0 });
        else r.push({ kind: "exit", seq: n, record: { cpu: 0, slab: undefined, n } });
        if (next(50) === 0) r.shed(500 + next(1500)); // the budget asks for room
        if (next(400) === 0) r.clear();
        if (next(4) !== 0) continue; // counted now and then: what changed between counts is walked at once
        const runs = new Map<object, number>(), items = new Map<object, number>();
        r.countSlabs((s, covers) => runs.set(s, (runs.get(s) ?? 0) + covers), sizes(new Set()));
        for (const item of r.after(0)) {
          const p = item.kind === "retained" ? item.payload : undefined;
          if (p === undefined || p.byteLength === p.buffer.byteLength) continue;
          items.set(p.buffer, (items.get(p.buffer) ?? 0) + sizeOfPayload(p));
        }
        expect(runs, `after item ${n}`).toEqual(items);
        if (items.size > 0) stuck++;
      }
      expect(stuck, "counts with payloads in slabs").toBeGreaterThan(600);
    }
  });
});

describe("a listener's records kept in slabs", () => {
  const listener = (sealed: Set<object>, policy: "drop-newest" | "drop-oldest" = "drop-newest") =>
    new Listener<Rec, Uint8Array>({
      id: "l",
      capacity: 3,
      policy,
      ephemeral: false,
      owner: "t",
      now: 0,
      retain: () => new Uint8Array(4), // a buffer of its own: only the records count
      account: createMemoryBudget().open("t"),
      sizeOf: () => 100,
      unshare: (r) => ({ ...r, slab: undefined }),
      slabs: {
        records: { eachSlab: (r: Rec, count) => r.slab !== undefined && count(r.slab, 100, sizes(sealed)) },
        payloads: sizes(sealed),
      },
    });
  // How many records it holds in slabs (each covers 100).
  const counted = (l: Listener<Rec, Uint8Array>) => {
    let covered = 0;
    l.countSlabs((_, covers) => (covered += covers));
    return covered / 100;
  };
  // A stream attached (told it ends by the returned function) takes `taken` of three records queued in `slab`.
  const oldStreamTook = (l: Listener<Rec, Uint8Array>, slab: object, taken: number) => {
    const oldEnd = () => {};
    l.attach(() => {}, oldEnd);
    for (let n = 1; n <= 3; n++) l.deliver({ cpu: 0, slab, n }, 100, n);
    l.take(taken);
    return oldEnd;
  };

  it("counts what it queued and what is in flight until that batch is written, and none of its unshared copies", () => {
    const slab = {}, l = listener(new Set([slab]));
    l.deliver({ cpu: 0, slab, n: 1 }, 100, 1);
    l.deliver({ cpu: 0, slab, n: 2 }, 100, 2);
    l.deliver({ cpu: 0, slab, n: 3 }, 100, 5000); // far from the last: held apart, as a copy
    expect(counted(l)).toBe(2);
    l.take(1); // 1 in flight
    expect(counted(l)).toBe(2);
    l.take(1); // 1 was written; 2 in flight
    expect(counted(l)).toBe(1);
    l.take(10); // the copy in flight
    expect(counted(l)).toBe(0);
  });

  it("keeps a taken-over stream's batch in flight charged and counted until that stream detaches", () => {
    const slab = {}, l = listener(new Set([slab]));
    const oldEnd = oldStreamTook(l, slab, 2), newEnd = () => {}; // the old stream holds 1 and 2
    const charged = l.memoryBytes;
    l.attach(() => {}, newEnd); // takeover: the old stream may never resume to let go of its batch
    l.take(10); // the new stream takes 3
    expect(counted(l)).toBe(3);
    expect(l.memoryBytes).toBe(charged);
    l.detach(oldEnd, 0); // the old stream is gone
    expect(counted(l)).toBe(1);
    expect(charged - l.memoryBytes).toBe(2 * (100 + QUEUED_EXIT_BYTES));
    l.detach(newEnd, 0);
    expect(counted(l)).toBe(0);
  });

  it("removed while another stream drains it, stays charged when a taken-over stream detaches", () => {
    const slab = {}, l = listener(new Set([slab]));
    const oldEnd = oldStreamTook(l, slab, 1), drainEnd = () => {}; // the old stream holds 1
    l.attach(() => {}, drainEnd);
    l.close("deregistered", "removed"); // as the registry removes a listener with a stream attached
    l.retire(true);
    l.detach(oldEnd, 0); // the taken-over stream goes first
    expect(l.closed).toBe(false);
    expect(l.memoryBytes).toBeGreaterThanOrEqual(2 * (100 + QUEUED_EXIT_BYTES)); // 2 and 3, still queued to drain
    l.detach(drainEnd, 0);
    expect(l.closed).toBe(true);
    expect(l.memoryBytes).toBe(0);
  });

  it("removed while another stream drains it, gives back the draining stream's batch when it goes first", () => {
    const slab = {}, l = listener(new Set([slab]));
    const oldEnd = oldStreamTook(l, slab, 1), drainEnd = () => {}; // the old stream holds 1
    l.attach(() => {}, drainEnd);
    l.close("deregistered", "removed");
    l.retire(true);
    l.take(2); // the draining stream holds 2 and 3
    const held = l.memoryBytes;
    l.detach(drainEnd, 0);
    expect(l.closed).toBe(false); // the old stream still holds 1
    expect(held - l.memoryBytes).toBe(2 * (100 + QUEUED_EXIT_BYTES));
    l.detach(oldEnd, 0);
    expect(l.closed).toBe(true);
  });

  it("removed with only a taken-over stream holding a batch, drops its queue and keeps that batch charged until it detaches", () => {
    const slab = {}, l = listener(new Set([slab]));
    const oldEnd = oldStreamTook(l, slab, 1), newEnd = () => {};
    l.attach(() => {}, newEnd);
    l.detach(newEnd, 0); // the new stream is gone; the old one still holds its batch
    l.retire(false); // removed, nothing draining
    expect(l.queue.length).toBe(0);
    expect(l.closed).toBe(false);
    expect(counted(l)).toBe(1);
    expect(l.memoryBytes).toBeGreaterThanOrEqual(100 + QUEUED_EXIT_BYTES);
    l.detach(oldEnd, 0);
    expect(l.closed).toBe(true);
  });

  it("charges and counts a resumed stream's replay batch until it asks for the next, even once retention let go of it", () => {
    const slab = new ArrayBuffer(1000);
    const l = new Listener<Rec, Uint8Array>({
      id: "r",
      capacity: 4,
      policy: "drop-newest",
      ephemeral: false,
      owner: "t",
      now: 0,
      retain: (r) => new Uint8Array(slab, r.n * 10, 10),
      account: createMemoryBudget().open("t"),
      sizeOfPayload: () => 50,
      slabs: { records: { eachSlab: () => {} }, payloads: sizes(new Set([slab])) },
    });
    const covered = () => {
      let c = 0;
      l.countSlabs((_, covers) => (c += covers));
      return c;
    };
    for (let n = 1; n <= 4; n++) l.deliver({ cpu: 0, slab: undefined, n }, 0, n);
    l.take(4);
    l.take(4); // the batch was written: the retention alone holds the four
    const replay = l.replayFrom(0), before = l.memoryBytes;
    expect(replay(2).length).toBe(2); // 1 and 2, held by the stream
    expect(l.memoryBytes - before).toBe(2 * 50);
    for (let n = 5; n <= 8; n++) l.deliver({ cpu: 0, slab: undefined, n }, 0, n);
    l.take(4);
    l.take(4); // the retention now holds 5-8: it let go of 1 and 2
    expect(covered()).toBe(4 * 50 + 2 * 50); // retained, and in the replay batch
    replay(0); // the stream ends
    expect(covered()).toBe(4 * 50);
    expect(l.memoryBytes - before).toBe(0);
  });

  it("gives back a replay batch when its stream ends mid-replay", async () => {
    const reg = createRegistry<Rec, Uint8Array>({
      feed: { possible: { nbits: 1 }, start: () => {}, watch: () => {}, close: async () => {} },
      retain: () => new Uint8Array(10),
      memory: { budget: createMemoryBudget(), sizeOf: () => 0, sizeOfPayload: () => 50 },
    });
    const l = reg.create([0], { buffer: 8, policy: "drop-newest", ephemeral: false, owner: "t" });
    for (let n = 1; n <= 4; n++) l.deliver({ cpu: 0, slab: undefined, n }, 0, n);
    l.take(4);
    l.take(4);
    const before = l.memoryBytes, ctl = new AbortController();
    const encode = { open: () => 0, batch: (items: readonly unknown[]) => items.length, heartbeat: () => -1 };
    const sub = subscribe(reg, l, {
      maxBatch: 2,
      heartbeatMs: 60_000,
      signal: ctl.signal,
      encode,
      replay: l.replayFrom(0),
    });
    await sub.next();
    expect((await sub.next()).value).toBe(2); // the first replay batch, held
    expect(l.memoryBytes - before).toBe(2 * 50);
    ctl.abort();
    expect(l.memoryBytes - before).toBe(0);
    await reg.close();
  });

  // A queued record gains a slab when a stream first encodes its Exit body, and the listener holding it changes in
  // no other way (a stalled one's full queue): each count must see it. The attack review's case against a ledger
  // that reused a listener's runs while nothing it held changed.
  it("counts a slab a queued record gained since the last count", () => {
    const stats = {}, body = {}, sealed = new Set<object>([stats, body]), ledger = new SlabLedger();
    const encoded = new Set<number>();
    const l = new Listener<Rec, Uint8Array>({
      id: "b",
      capacity: 3,
      policy: "drop-newest",
      ephemeral: false,
      owner: "t",
      now: 0,
      retain: () => new Uint8Array(4),
      account: createMemoryBudget().open("t"),
      sizeOf: () => 100,
      slabs: {
        records: {
          eachSlab: (r: Rec, count) => {
            count(stats, 100, sizes(sealed));
            if (encoded.has(r.n)) count(body, 10, sizes(sealed));
          },
        },
        payloads: sizes(sealed),
      },
    });
    for (let n = 1; n <= 3; n++) l.deliver({ cpu: 0, slab: stats, n }, 100, n);
    l.deliver({ cpu: 0, slab: stats, n: 4 }, 100, 4); // full: dropped, nothing held changes
    ledger.settle([l]);
    expect(l.slabBytes).toBe(1000 - 300);
    encoded.add(1); // another stream encoded record 1's body into a slab
    ledger.settle([l]);
    expect(l.slabBytes).toBe(1000 - 300 + 1000 - 10);
  });

  it("is charged what the ledger counts, in place of its last charge, and nothing once removed", () => {
    const slab = {}, sealed = new Set<object>([slab]), l = listener(sealed), ledger = new SlabLedger();
    for (let n = 1; n <= 3; n++) l.deliver({ cpu: 0, slab, n }, 100, n);
    const base = l.memoryBytes;
    ledger.settle([l]);
    expect(l.memoryBytes - base).toBe(1000 - 3 * 100);
    ledger.settle([l]);
    expect(l.memoryBytes - base).toBe(700);
    l.take(10);
    l.take(10);
    const taken = l.memoryBytes;
    ledger.settle([l]);
    expect(taken - l.memoryBytes).toBe(700);
    l.deliver({ cpu: 0, slab, n: 4 }, 100, 4);
    ledger.settle([l]);
    l.retire(false);
    expect(l.memoryBytes).toBe(0);
    ledger.settle([l]);
    expect(l.memoryBytes).toBe(0);
  });
});
