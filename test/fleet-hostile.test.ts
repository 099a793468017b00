/**
 * watchFleet against hostile or buggy publishers, on a real nats-server: any
 * NATS user allowed to publish on `taskwire.*.exits.*` sends what it likes.
 * A real taskwire publisher ("good") runs beside the hostile messages; its
 * events must keep coming, and nothing an "evil" subject sends may crash,
 * stall, blind or bloat the consumer, or invent loss for another host.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { connect } from "@nats-io/transport-node";
import { jetstream, type JetStreamClient, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { type FleetExitEvent, LossReason, SubscribeExitsResponseSchema, watchFleet } from "@taskwire/client";
import {
  collectFleet,
  exitMsg,
  fleetServer,
  haveNatsServer,
  NATS_SERVER,
  type NatsServer,
  startNats,
  stopFleetServer,
} from "./fleet-nats.ts";
import type { Running } from "./helpers.ts";
import { checkHosts } from "../src/cli/fleet-input.ts";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

// gc() for the heap measurements (H5).
setFlagsFromString("--expose-gc");

const lostMsg = (first: bigint, last: bigint, count: bigint) =>
  toBinary(
    SubscribeExitsResponseSchema,
    create(SubscribeExitsResponseSchema, {
      events: [{
        seq: last,
        event: {
          case: "lost",
          value: { count, firstSeq: first, lastSeq: last, reason: LossReason.SUBSCRIBER_OVERFLOW },
        },
      }],
    }),
  );

const seqsOf = (events: readonly FleetExitEvent[], host: string) =>
  events.filter((e) => e.host === host && e.event.case === "exit").map((e) => Number(e.seq));
const lostOf = (events: readonly FleetExitEvent[], host: string) =>
  events.filter((e) => e.host === host && e.event.case === "lost").reduce(
    (n, e) => n + (e.event.case === "lost" ? Number(e.event.value.count) : 0),
    0,
  );

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.skipIf(!haveNatsServer)(`watchFleet against hostile publishers (needs ${NATS_SERVER})`, () => {
  let nats: NatsServer;
  let good: Running;
  let nc: NatsConnection;
  let js: JetStreamClient;
  const pub = (host: string, data: Uint8Array, id?: string) =>
    js.publish(`taskwire.${host}.exits.0`, data, id === undefined ? {} : { msgID: id });

  beforeAll(async () => {
    nats = await startNats();
    good = await fleetServer(nats.url, "good", { exitRate: 200 });
    nc = await connect({ servers: nats.url });
    js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    await until("the stream", () => true);
    await jsm.streams.info("TASKWIRE_EXITS");
  }, 30_000);

  afterAll(async () => {
    await nc?.close();
    if (good !== undefined) await stopFleetServer(good);
    await nats?.close();
  });

  // Consumes everything; resolves once the good host's events flow.
  async function consume(o: Parameters<typeof collectFleet>[0] = {}) {
    const bad: { host: string; subject: string; reason: string; count: number }[] = [];
    const c = collectFleet({ servers: nats.url, onBadMessage: (b) => bad.push(b), ...o });
    await until("the good host's events", () => seqsOf(c.events, "good").length > 0);
    const goodAfter = async (n = 20) => {
      const have = seqsOf(c.events, "good").length;
      await until(`${n} more events of the good host`, () => seqsOf(c.events, "good").length >= have + n);
    };
    return { ...c, bad, goodAfter };
  }

  it("H1: a garbage message is skipped, terminated and reported; the durable consumer is not poisoned", async () => {
    const c = await consume({ durable: "h1", ackWaitMs: 1000 });
    await pub("evil1", new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]));
    await pub("evil1", exitMsg([2n ** 60n]), "evil1:r:1"); // past 2^53
    await pub("evil1", lostMsg(5n, 3n, 1n), "evil1:r:2"); // first > last
    await pub("evil1", lostMsg(3n, 5n, 1000n), "evil1:r:3"); // count != last - first + 1
    await c.goodAfter();
    await until("4 bad messages", () => c.bad.length === 4);
    expect(c.bad.map((b) => [b.host, b.subject, b.count])).toEqual(
      [1, 2, 3, 4].map((n) => ["evil1", "taskwire.evil1.exits.0", n]),
    );
    expect(c.error).toBeUndefined();
    await c.stop();
    // The same durable again after more than its ack wait: no bad message comes back (terminated, not redelivered).
    await new Promise((r) => setTimeout(r, 1500));
    const again = await consume({ durable: "h1", ackWaitMs: 1000 });
    await again.goodAfter(50);
    expect(again.bad).toEqual([]);
    await again.stop();
  }, 30_000);

  it("H2: one message of 100k events (seqs 1, 3, 5, ...) is refused at once; other hosts do not stall", async () => {
    const c = await consume();
    const t0 = Date.now();
    // Events of a seq alone (the review's ~590 KB message): NATS's 1 MB max_payload holds 100k of them.
    const events = Array.from({ length: 100_000 }, (_, i) => ({ seq: BigInt(1 + 2 * i) }));
    await pub(
      "evil2",
      toBinary(SubscribeExitsResponseSchema, create(SubscribeExitsResponseSchema, { events })),
      "evil2:r:1",
    );
    await c.goodAfter();
    await until("the refusal", () => c.bad.length === 1);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(c.bad[0]?.reason).toMatch(/100000 events, more than the 1024/);
    expect(c.events.filter((e) => e.host === "evil2")).toEqual([]);
    await c.stop();
  }, 30_000);

  it("H3: held bytes are bounded: past maxHeldBytes a gap is given up at once, not held for its wait", async () => {
    const c = await consume({ reorder: { waitMs: 600_000, maxHeldBytes: 1 << 20 } });
    await pub("evil3", exitMsg([1n]), "evil3:r:1");
    await until("evil3's first event", () => seqsOf(c.events, "evil3").length === 1);
    // 40 messages of 200 KB, each after a gap: unbounded, all 8 MB would wait 10 minutes.
    for (let i = 1; i <= 40; i++) await pub("evil3", exitMsg([BigInt(1 + 2 * i)], 200_000), `evil3:r:${1 + 2 * i}`);
    await until("evil3's held events given up", () => seqsOf(c.events, "evil3").length >= 36);
    expect(lostOf(c.events, "evil3")).toBe(seqsOf(c.events, "evil3").length - 1); // one seq lost per gap, exactly
    await c.goodAfter();
    await c.stop();
  }, 30_000);

  it(
    "H4: a forged seq far ahead invents no loss while the host publishes, and never silences its real events",
    async () => {
      const c = await consume({ reorder: { waitMs: 500 } });
      const real = async (from: number, to: number) => {
        for (let s = from; s <= to; s++) await pub("evil4", exitMsg([BigInt(s)]), `evil4:r:${s}`);
      };
      await real(1, 10);
      await pub("evil4", exitMsg([1_000_010n]), "evil4:r:1000010");
      for (let s = 11; s <= 30; s++) (await real(s, s), await new Promise((r) => setTimeout(r, 50)));
      await until("evil4's seqs 1..30", () => seqsOf(c.events, "evil4").length >= 30);
      expect(lostOf(c.events, "evil4")).toBe(0); // the host kept publishing: no gap stalled
      // The host goes quiet: the forged gap is given up (as a retention loss could be), then the real events resume.
      await until("the forged gap given up", () => lostOf(c.events, "evil4") > 0);
      await real(31, 40);
      await until(
        "evil4's seqs 31..40",
        () => seqsOf(c.events, "evil4").filter((s) => s >= 31 && s <= 40).length === 10,
      );
      expect(
        seqsOf(c.events, "evil4").filter((s) => s <= 40),
      ).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
      expect(lostOf(c.events, "good")).toBe(0);
      await c.stop();
    },
    30_000,
  );

  it("H5: long Nats-Msg-Id runs or host tokens are refused, not kept as runs (63 MB per 1,000 of 60 KB)", async () => {
    const c = await consume();
    await c.goodAfter();
    const gc = runInNewContext("gc") as () => void;
    gc();
    const heap0 = process.memoryUsage().heapUsed;
    const long = "r".repeat(60_000);
    for (let i = 0; i < 500; i++) await pub(`evil6-${i}`, exitMsg([1n]), `evil6-${i}:${long}:1`);
    await pub("h".repeat(3000), exitMsg([1n]), "h:r:1");
    await until("501 refusals", () => c.bad.length === 501, 30_000);
    await c.goodAfter();
    gc();
    const grown = process.memoryUsage().heapUsed - heap0;
    expect(grown, `${(grown / 1e6).toFixed(1)} MB kept`).toBeLessThan(10e6);
    expect(c.bad[0]?.reason).toMatch(/Nats-Msg-Id run over 64 characters/);
    expect(c.bad[500]?.reason).toMatch(/host token over 128 characters/);
    expect(c.events.filter((e) => e.host.startsWith("evil6") || e.host.startsWith("hhh"))).toEqual([]);
    await c.stop();
  }, 60_000);

  it("M1: a host that sends N and N+2 and goes quiet gets its gap released by the timer", async () => {
    const c = await consume({ reorder: { waitMs: 300 } });
    await pub("evil5", exitMsg([1n]), "evil5:r:1");
    await pub("evil5", exitMsg([3n]), "evil5:r:3");
    await pub("evil5", exitMsg([5n]), "evil5:r:5");
    const t0 = Date.now();
    await until("evil5's held events", () => seqsOf(c.events, "evil5").length === 3, 5000);
    expect(Date.now() - t0).toBeLessThan(3000); // both gaps in one wait, not one each
    expect(lostOf(c.events, "evil5")).toBe(2);
    await c.stop();
  }, 30_000);

  it(
    "M2: a seq a resumed durable consumer gets again before the run's start, stored again after it, comes once",
    async () => {
      const o = { servers: nats.url, hosts: "evil6", durable: "m2", ackWaitMs: 1000 };
      await collectFleet(o).stop(); // the durable consumer, from now
      await pub("evil6", exitMsg([5n]), "evil6:r:5");
      for await (const ev of watchFleet(o)) if (ev.seq === 5n) break; // 5 yielded, its message not acked
      await pub("evil6", exitMsg([3n]), "evil6:r:3");
      await pub("evil6", exitMsg([4n]), "evil6:r:4");
      await pub("evil6", exitMsg([5n, 6n]), "evil6:r:5b"); // 5 stored again (forged, or republished)
      await new Promise((r) => setTimeout(r, 1500)); // past the ack wait: 5 comes again first, then 3 (the start)
      const c = collectFleet(o);
      await until("evil6's 6", () => seqsOf(c.events, "evil6").includes(6));
      await new Promise((r) => setTimeout(r, 300));
      await c.stop();
      expect(seqsOf(c.events, "evil6")).toEqual([5, 3, 4, 6]);
      expect(lostOf(c.events, "evil6")).toBe(0);
    },
    30_000,
  );

  it("L4: the connection's status reaches onStatus (NATS down, then back)", async () => {
    const statuses: string[] = [];
    const c = await consume({ onStatus: (st) => statuses.push(st.text), connectOptions: { reconnectTimeWait: 100 } });
    await nats.kill();
    await until("a disconnect status", () => statuses.some((t) => t.startsWith("NATS disconnected")));
    await nats.restart();
    await until("a reconnect status", () => statuses.some((t) => t.startsWith("NATS reconnected")), 15_000);
    await c.stop();
  }, 30_000);
});

describe("--hosts", () => {
  it("L13: a host name with dots is refused, naming its subject token", () => {
    expect(() => checkHosts("web-1.example.com")).toThrow(/use --hosts web-1_example_com/);
    expect(() => checkHosts("web-*")).not.toThrow();
    expect(() => checkHosts(undefined)).not.toThrow();
  });
});
