/** watchFleet's per-host order keeper (clients/ts/src/_fleet-order.ts), on its own: deliveries as JetStream makes them. */
import { describe, expect, it } from "vitest";
import { FleetOrder, type Ready } from "../clients/ts/src/_fleet-order.ts";
import { createWatchFleet } from "../clients/ts/src/_fleet-core.ts";
import { waterLevel } from "../clients/ts/src/_fleet-early.ts";
import type { WatchFleetOptions } from "../clients/ts/src/_fleet-options.ts";

const ev = (first: number, last = first) => ({ first, last, item: `${first}-${last}` });
const items = (r: Ready<string>[] | null) => (r ?? []).map((x) => ("item" in x ? x.item : `gap ${x.gap.join("-")}`));

describe("FleetOrder", () => {
  it("passes events in order, and drops one delivered again", () => {
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100 });
    const again = { fresh: false };
    expect(items(o.push("a", ev(5)))).toEqual(["5-5"]);
    expect(items(o.push("a", ev(6, 9)))).toEqual(["6-9"]);
    expect(o.push("a", ev(6, 9), again)).toBeNull();
    expect(o.push("a", ev(7), again)).toBeNull();
    expect(items(o.push("b", ev(1)))).toEqual(["1-1"]); // another run (a restarted host) counts on its own
  });

  it("holds events after a gap until it fills (CPUs' messages of one batch, a redelivery)", () => {
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100 });
    o.push("a", ev(1), 0);
    expect(items(o.push("a", ev(3), 1))).toEqual([]);
    expect(items(o.push("a", ev(5), 2))).toEqual([]);
    expect(o.held).toBe(2);
    expect(items(o.push("a", ev(2), 3))).toEqual(["2-2", "3-3"]);
    expect(items(o.push("a", ev(4), 4))).toEqual(["4-4", "5-5"]);
    expect(o.held).toBe(0);
  });

  it("gives a gap up as lost after waitMs, or when too much is held, with its exact seqs", () => {
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 3 });
    o.push("a", ev(1), 0);
    o.push("a", ev(10), 10);
    expect(items(o.push("a", ev(11), 1011))).toEqual(["gap 2-9", "10-10", "11-11"]);
    o.push("a", ev(20), 1100);
    o.push("a", ev(22), 1100);
    o.push("a", ev(24), 1100);
    expect(items(o.push("a", ev(26), 1100))).toEqual(["gap 12-19", "20-20"]);
  });

  it("after a restart of a durable consumer, unacked older messages come once, at once", () => {
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100 });
    expect(items(o.push("a", ev(100)))).toEqual(["100-100"]);
    expect(items(o.push("a", ev(98)))).toEqual(["98-98"]);
    expect(o.push("a", ev(98))).toBeNull();
    expect(items(o.push("a", ev(101)))).toEqual(["101-101"]);
  });

  it("a run first seen mid-batch starts after the batch: the batch's rest comes at once, its earlier messages are no gap", () => {
    // Batch 10-17 went out as CPU 0's message [10, 12, 14, 16] then CPU 1's [11, 13, 15, 17]; this consumer started
    // between them. Without the batch range, 12, 14 and 16 would be gaps held for waitMs, then reported lost.
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100 });
    const batch = [10, 17] as const;
    expect([11, 13, 15, 17].flatMap((s) => items(o.push("a", ev(s), { now: 0, batch })))).toEqual(
      ["11-11", "13-13", "15-15", "17-17"],
    );
    expect(items(o.push("a", ev(18), { now: 1, batch: [18, 19] }))).toEqual(["18-18"]);
    expect(items(o.push("a", ev(19), { now: 1, batch: [18, 19] }))).toEqual(["19-19"]);
    expect(o.held).toBe(0);
    expect(items(o.expire(5000))).toEqual([]);
    expect(o.push("a", ev(13), { fresh: false })).toBeNull(); // delivered again: once only
  });

  it("a run first seen at its batch's first message, or with a batch range that is forged, starts at that event", () => {
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100, maxEarly: 1000 });
    expect(items(o.push("a", ev(10), { now: 0, batch: [10, 13] }))).toEqual(["10-10"]);
    expect(items(o.push("a", ev(12), { now: 0, batch: [10, 13] }))).toEqual([]); // 11 is in a later message
    expect(items(o.push("a", ev(11), { now: 0, batch: [10, 13] }))).toEqual(["11-11", "12-12"]);
    // Not containing the message (ending before it or at its first seq, starting after it), or reaching maxEarly
    // past it: ignored, so the host is ordered from its event.
    const forged = [["b", [20, 20]], ["c", [5, 1_000_000]], ["d", [25, 40]], ["e", [5, 10]]] as const;
    for (const [run, batch] of forged) {
      expect(items(o.push(run, ev(21), { now: 0, batch }))).toEqual(["21-21"]);
      expect(items(o.push(run, ev(23), { now: 0, batch }))).toEqual([]);
      expect(items(o.push(run, ev(22), { now: 0, batch }))).toEqual(["22-22", "23-23"]);
    }
  });

  it("a run first seen at messages sent again after an outage took its first ones: every event in seq order", () => {
    // The pump sends them again in seq order, each naming as its batch 0-8 (for older SDKs) and resent 8: CPU 0's
    // [1, 5], CPU 1's [2, 6], CPU 2's [3, 7], CPU 3's [4, 8]. Nothing of the run is in the stream before them.
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100 });
    const again = (s: number) => ({ now: 0, batch: [s - 1, 8] as const, resent: 8 });
    const msgs = [[1, 5], [2, 6], [3, 7], [4, 8]];
    const out = msgs.flatMap((m) => m.flatMap((s) => items(o.push("a", ev(s), again(m[0]!)))));
    expect(out).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((s) => `${s}-${s}`));
    expect(o.held).toBe(0);
    // Taken by its batch range alone (as SDKs before `resent` did): each message at once, seq 5 after 1.
    const old = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100 });
    const oldOut = msgs.flatMap((m) =>
      m.flatMap((s) => items(old.push("a", ev(s), { now: 0, batch: [m[0]! - 1, 8] })))
    );
    expect(oldOut.slice(0, 3)).toEqual(["1-1", "5-5", "2-2"]);
  });

  it("sent again after newer ones were stored: those are skipped as from before the start, not lost", () => {
    // CPU 1's [2, 6] and CPU 3's [4, 8] were acked; CPU 0's [1, 5] and CPU 2's [3, 7] failed and were sent again
    // (resent 8). This consumer started after the acked ones: 2, 4, 6 and 8 never come.
    const run = (o: FleetOrder<string>) =>
      [[1, 5], [3, 7]].flatMap((m) =>
        m.flatMap((s) => items(o.push("a", ev(s), { now: 0, batch: [m[0]! - 1, 8], resent: 8 })))
      );
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100 });
    expect(run(o)).toEqual(["1-1"]); // 3, 5 and 7 wait: 2, 4 and 6 may still come (sent again with them)
    // A newer message: the stream holds no more of 2-8 before it.
    expect(items(o.push("a", ev(9), { now: 10, batch: [9, 10] }))).toEqual(["3-3", "5-5", "7-7", "9-9"]);
    // One sent again once more, stored only now: yielded late, once; seqs past resent are ordered (and lost) as ever.
    expect(items(o.push("a", ev(2), { now: 20, batch: [1, 12], resent: 12 }))).toEqual(["2-2"]);
    expect(o.push("a", ev(2), { now: 21, batch: [1, 12], resent: 12 })).toBeNull();
    expect(items(o.push("a", ev(12), { now: 30, batch: [11, 12] }))).toEqual([]);
    expect(items(o.expire(1031))).toEqual(["gap 10-11", "12-12"]);
    // A quiet host (no newer message): the gaps up to resent are skipped when given up, without a loss.
    const quiet = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100 });
    run(quiet);
    expect(items(quiet.expire(500))).toEqual([]);
    expect(items(quiet.expire(1001))).toEqual(["3-3", "5-5", "7-7"]);
    expect(quiet.held).toBe(0);
  });

  it("a resent below its message's last seq, or maxEarly or more past it, is ignored: the batch range is taken", () => {
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100, maxEarly: 1000 });
    // Resent 21 below the event's last (22): its batch 20-30 is taken, the run starts at 31.
    expect(items(o.push("a", ev(21, 22), { now: 0, batch: [20, 30], resent: 21 }))).toEqual(["21-22"]);
    expect(items(o.push("a", ev(31), { now: 0 }))).toEqual(["31-31"]);
    // Resent 1,000 past it, without a batch: the run starts at the event, and a gap is lost as ever.
    expect(items(o.push("b", ev(21), { now: 0, resent: 1021 }))).toEqual(["21-21"]);
    expect(items(o.push("b", ev(23), { now: 0, resent: 1021 }))).toEqual([]);
    expect(items(o.expire(1001))).toEqual(["gap 22-22", "23-23"]);
  });

  it("a redelivery before any first delivery sets no start: the acked seqs between it and the next are no gap", () => {
    // A durable consumer resumed on a quiet host: B (2, 4, 6, 8) was fetched and not acked; 9-16 were acked. B comes
    // again first, then the host's next batch.
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100 });
    const again = { now: 0, fresh: false };
    expect([2, 4, 6, 8].flatMap((s) => items(o.push("a", ev(s), again)))).toEqual(["2-2", "4-4", "6-6", "8-8"]);
    expect(o.push("a", ev(4), again)).toBeNull(); // once only
    expect(items(o.push("a", ev(17), { now: 1, batch: [17, 18] }))).toEqual(["17-17"]);
    expect(items(o.push("a", ev(18), { now: 1, batch: [17, 18] }))).toEqual(["18-18"]);
    expect(items(o.expire(5000))).toEqual([]);
    expect(o.push("a", ev(6), again)).toBeNull();
  });

  it("a seq redelivered before the run's start, at or past it, is yielded once: no repeat, no gap", () => {
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100 });
    const again = { now: 0, fresh: false };
    expect(items(o.push("a", ev(5), again))).toEqual(["5-5"]);
    expect(items(o.push("a", ev(3), { now: 0 }))).toEqual(["3-3"]); // the start: 5 is past it
    expect(items(o.push("a", ev(4), { now: 0 }))).toEqual(["4-4"]);
    expect(o.push("a", ev(5), { now: 0 })).toBeNull(); // a first delivery of 5 (stored again, or forged): a repeat
    expect(items(o.push("a", ev(6), { now: 0 }))).toEqual(["6-6"]);
    // The first first delivery is that seq itself.
    expect(items(o.push("b", ev(7, 9), again))).toEqual(["7-9"]);
    expect(o.push("b", ev(7, 9), { now: 0 })).toBeNull();
    expect(items(o.push("b", ev(10), { now: 0 }))).toEqual(["10-10"]);
    // Gaps around such seqs are reported exactly: 9 lost, 10 not.
    expect(items(o.push("c", ev(10), again))).toEqual(["10-10"]);
    expect(items(o.push("c", ev(8), { now: 0 }))).toEqual(["8-8"]);
    expect(items(o.push("c", ev(11), { now: 0 }))).toEqual([]);
    expect(items(o.expire(5000))).toEqual(["gap 9-9", "11-11"]);
    expect(o.held).toBe(0);
  });

  it("an older publisher's batch (no range) redelivered in part before the rest: each seq once, none lost", () => {
    // CPU 0's message [100, 102, 104] was fetched and not acked; CPU 1's [101, 103, 105] comes fresh after it.
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100 });
    const again = { now: 0, fresh: false };
    expect([100, 102, 104].flatMap((s) => items(o.push("a", ev(s), again)))).toEqual(["100-100", "102-102", "104-104"]);
    expect([101, 103, 105].flatMap((s) => items(o.push("a", ev(s), { now: 0 })))).toEqual(
      ["101-101", "103-103", "105-105"],
    );
    expect(items(o.expire(5000))).toEqual([]);
    expect(o.push("a", ev(102), again)).toBeNull();
  });

  it("a forged far-ahead seq invents no loss while the host keeps publishing in order", () => {
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100 });
    o.push("a", ev(1), 0);
    expect(items(o.push("a", ev(1_000_002), 1))).toEqual([]);
    const out: string[] = [];
    for (let s = 2; s < 500; s++) out.push(...items(o.push("a", ev(s), s * 10)));
    expect(out).toEqual(Array.from({ length: 498 }, (_, i) => `${i + 2}-${i + 2}`));
    expect(o.held).toBe(1);
  });

  it("after a forged jump was given up, real events below the head still come (first deliveries), repeats not", () => {
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100 });
    o.push("a", ev(1), 0);
    o.push("a", ev(1_000_002), 1);
    expect(items(o.expire(2000))).toEqual(["gap 2-1000001", "1000002-1000002"]);
    expect(items(o.push("a", ev(2), 2001))).toEqual(["2-2"]);
    expect(items(o.push("a", ev(3), 2002))).toEqual(["3-3"]);
    expect(o.push("a", ev(3), { now: 2003, fresh: false })).toBeNull();
  });

  it("expire releases every expired gap of every run at once, without an arrival", () => {
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100 });
    for (const run of ["a", "b", "c"]) {
      o.push(run, ev(1), { now: 0, label: run });
      o.push(run, ev(3), { now: 0, label: run });
      o.push(run, ev(5), { now: 0, label: run });
    }
    expect(items(o.expire(500))).toEqual([]);
    expect(items(o.expire(1001))).toEqual([
      ...["a", "b", "c"].flatMap(() => ["gap 2-2", "3-3", "gap 4-4", "5-5"]),
    ]);
    expect(o.held).toBe(0);
  });

  it("100k held events with every other seq missing give up in bounded time (a heap, not a scan)", () => {
    const o = new FleetOrder<string>({ waitMs: 1_000_000, maxHeld: 65_536 });
    o.push("a", ev(1), 0);
    const t0 = performance.now();
    let gaps = 0;
    for (let i = 1; i <= 100_000; i++) gaps += (o.push("a", ev(1 + 2 * i), 1) ?? []).filter((r) => "gap" in r).length;
    expect(o.held).toBeLessThanOrEqual(65_536);
    expect(gaps).toBe(100_000 - 65_536);
    expect(performance.now() - t0).toBeLessThan(5000); // quadratic took minutes; linear-log takes tens of ms
  });

  it("a run full of forged early seqs takes more in bounded time per push (a batch given up, not one at a time)", () => {
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100 });
    o.push("a", ev(2 ** 52), { now: 0, label: "h" }); // the run starts there: every seq below is early
    const t0 = performance.now();
    for (let s = 1; s <= 200_000; s++) o.push("a", ev(s), { now: 0, label: "h" });
    expect(o.early).toBeLessThanOrEqual(65_536);
    expect(o.early).toBeGreaterThan(64_000);
    expect(performance.now() - t0).toBeLessThan(4000); // one at a time: 11.8 s (59 us a push); in batches: 0.2 s
  });

  it("held bytes are bounded: the run holding the most gives up its gap, never another host's", () => {
    const o = new FleetOrder<string>({ waitMs: 1_000_000, maxHeld: 1_000_000, maxHeldBytes: 10_000 });
    o.push("victim", { ...ev(1), bytes: 100 }, { now: 0, label: "victim" });
    o.push("victim", { ...ev(3), bytes: 100 }, { now: 0, label: "victim" });
    o.push("evil", { ...ev(1), bytes: 100 }, { now: 0, label: "evil" });
    const out: string[] = [];
    for (let i = 1; i <= 200; i++) {
      out.push(...items(o.push("evil", { ...ev(1 + 2 * i), bytes: 1000 }, { now: 0, label: "evil" })));
    }
    expect(o.heldBytes).toBeLessThanOrEqual(10_000);
    expect(out.filter((x) => x.startsWith("gap")).length).toBeGreaterThan(180);
    const late = o.push("victim", ev(2), { now: 1, label: "victim" });
    expect(items(late)).toEqual(["2-2", "3-3"]); // the victim's gap was not given up
  });

  it("bounds runs per host and in all (LRU), giving an evicted run's gaps up first; bounds early seqs", () => {
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100, maxRuns: 50, maxRunsPerLabel: 4, maxEarly: 10 });
    o.push("good:r", ev(1), { now: 0, label: "good" });
    for (let i = 0; i < 1000; i++) o.push(`evil:${i}`, ev(1), { now: 0, label: "evil" });
    expect(o.runs).toBe(5);
    o.push("good:r", ev(3), { now: 0, label: "good" });
    for (let i = 0; i < 100; i++) o.push(`h${i}:r`, ev(1), { now: 0, label: `h${i}` });
    expect(o.runs).toBe(50);
    o.push("x", ev(1000), { now: 0 });
    for (let s = 1; s < 999; s++) o.push("x", ev(s), { now: 0 });
    expect(o.runs).toBe(50);
  });

  it("bounds early seqs in all: a host flooding forged ones forgets its own first, honest hosts keep theirs", () => {
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100, maxEarly: 1000, maxEarlyTotal: 4000 });
    const again = (label: string) => ({ now: 0, fresh: false, label });
    // Two honest hosts, each a durable consumer resumed: 300 redeliveries before the run's start, then new events.
    const honest = ["good", "fine"];
    const redelivered = Array.from({ length: 300 }, (_, i) => 2 * i + 1);
    for (const h of honest) for (const s of redelivered) o.push(`${h}:r`, ev(s), again(h));
    // The forger, on three hosts' subjects: 16 runs each, every one a first delivery far ahead and 1,000 seqs below.
    for (let i = 0; i < 48; i++) {
      const label = `evil${i % 3}`, fresh = { now: 0, label };
      o.push(`${label}:${i}`, ev(1_000_000), fresh);
      for (let s = 1; s <= 1000; s++) o.push(`${label}:${i}`, ev(s), fresh);
    }
    const early = o.early;
    // The forged seqs still known as repeats are within the bound (48,000 were before it).
    let known = 0;
    for (let i = 0; i < 48; i++) {
      for (let s = 1; s <= 1000; s++) {
        known += o.push(`evil${i % 3}:${i}`, ev(s), again(`evil${i % 3}`)) === null ? 1 : 0;
      }
    }
    expect(known).toBeLessThanOrEqual(4000);
    expect(early).toBeLessThanOrEqual(4000);
    // The honest hosts: every redelivery again a repeat, their new events in order, their gaps exact.
    for (const h of honest) {
      for (const s of redelivered) expect(o.push(`${h}:r`, ev(s), again(h))).toBeNull();
      expect(items(o.push(`${h}:r`, ev(1000), { now: 0, label: h }))).toEqual(["1000-1000"]);
      expect(items(o.push(`${h}:r`, ev(1002), { now: 0, label: h }))).toEqual([]);
      expect(items(o.push(`${h}:r`, ev(1001), { now: 0, label: h }))).toEqual(["1001-1001", "1002-1002"]);
      expect(items(o.push(`${h}:r`, ev(1005), { now: 0, label: h }))).toEqual([]);
    }
    expect(items(o.expire(5000))).toEqual(["gap 1003-1004", "1005-1005", "gap 1003-1004", "1005-1005"]);
  });

  it("an early seq forgotten is yielded again when delivered again, and reported lost if its run starts below it", () => {
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100, maxEarly: 2 });
    const again = { now: 0, fresh: false };
    expect([5, 6, 7].flatMap((s) => items(o.push("a", ev(s), again)))).toEqual(["5-5", "6-6", "7-7"]); // 5 forgotten
    expect(items(o.push("a", ev(3), { now: 0 }))).toEqual(["3-3"]); // the start: 6 and 7 count as come, 5 not
    expect(items(o.push("a", ev(4), { now: 0 }))).toEqual(["4-4"]);
    expect(items(o.expire(5000))).toEqual(["gap 5-5"]);
    expect(items(o.push("b", ev(5), again))).toEqual(["5-5"]);
    expect(items(o.push("b", ev(6), again))).toEqual(["6-6"]);
    expect(items(o.push("b", ev(7), again))).toEqual(["7-7"]);
    expect(items(o.push("b", ev(5), again))).toEqual(["5-5"]); // forgotten: twice
  });
});

describe("waterLevel", () => {
  it("cuts the largest counts first, down to one level, freeing at least what is needed", () => {
    expect(waterLevel([100, 10, 5], 50)).toBe(50);
    expect(waterLevel([10, 100, 5], 95)).toBe(7); // 100 and 10 down to 7: 96 freed
    expect(waterLevel([3, 3], 1)).toBe(2);
    expect(waterLevel([3, 3], 100)).toBe(0);
    expect(waterLevel([], 1)).toBe(0);
  });
});

describe("watchFleet's connection", () => {
  it("names the servers it could not connect to (their passwords not shown), keeping nats.js's error as the cause", async () => {
    const refused = new Error("connection refused");
    const connect = () => Promise.reject(refused);
    const watch = createWatchFleet(connect);
    const err = await watch({ servers: "nats://ops:s3cret@127.0.0.1:1, tls://10.0.0.2:4222" }).next().catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toBe(
      "watchFleet: cannot connect to NATS at nats://***@127.0.0.1:1, tls://10.0.0.2:4222: connection refused; check " +
        "the URLs, that the server runs with JetStream (nats-server -js), and the credentials (connectOptions)",
    );
    expect((err as Error).cause).toBe(refused);
  });
});

describe("watchFleet's numbers", () => {
  it("refuses a bound or wait that bounds nothing (NaN), or none at all, with a RangeError before connecting", async () => {
    let connects = 0;
    const watch = createWatchFleet(() => (connects++, Promise.reject(new Error("connection refused"))));
    const refused = async (
      o: Partial<WatchFleetOptions>,
    ) => ((await watch({ servers: "nats://127.0.0.1:1", ...o }).next().catch((e) => e)) as Error);
    for (
      const [reorder, says] of [
        [{ maxEarlySeqs: NaN }, "reorder.maxEarlySeqs must be an integer >= 0, got NaN"],
        [{ maxEarlySeqs: -1 }, "reorder.maxEarlySeqs must be an integer >= 0, got -1"],
        [{ maxEarlySeqs: 1.5 }, "reorder.maxEarlySeqs must be an integer >= 0, got 1.5"],
        [{ maxEarlySeqs: Infinity }, "reorder.maxEarlySeqs must be an integer >= 0, got Infinity"],
        [{ maxHeld: NaN }, "reorder.maxHeld must be an integer >= 0, got NaN"],
        [{ maxHeldBytes: -1 }, "reorder.maxHeldBytes must be an integer >= 0, got -1"],
        [{ maxRuns: 0 }, "reorder.maxRuns must be an integer >= 1, got 0"],
        [{ maxRunsPerHost: NaN }, "reorder.maxRunsPerHost must be an integer >= 1, got NaN"],
        [{ waitMs: NaN }, "reorder.waitMs must be a number of ms >= 0, got NaN"],
      ] as const
    ) {
      const err = await refused({ reorder });
      expect([err.constructor, err.message]).toEqual([RangeError, `watchFleet: ${says}`]);
    }
    const err = await refused({ ackWaitMs: NaN }); // the default wait (ackWaitMs + 5 s) would be NaN too
    expect([err.constructor, err.message]).toEqual([
      RangeError,
      "watchFleet: ackWaitMs must be an integer >= 1, got NaN",
    ]);
    expect(connects).toBe(0);
    // Good ones pass: 0 early seqs remembered, an endless wait.
    expect((await refused({ reorder: { maxEarlySeqs: 0, waitMs: Infinity, maxHeld: 0 } })).message).toMatch(
      /cannot connect to NATS/,
    );
  });
});
