/**
 * The fleet through a real nats-server (Debian's, started here with -js on a
 * loopback port and a temporary store): taskwire servers publishing into
 * JetStream, watchFleet consuming. Checks the core's invariant across the
 * hop, per host: every seq 1..produced arrives exactly once, as an exit or
 * inside one loss marker, in order.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { type FleetExitEvent, watchFleet } from "@taskwire/client";
import {
  collectFleet,
  craftedStream,
  exitMsg,
  fleetServer,
  haveNatsServer,
  type NatsServer,
  startNats,
  stopFleetServer,
  tally,
} from "./fleet-nats.ts";
import { eventually, sleep } from "./helpers.ts";
import { openFleetInput } from "../src/cli/fleet-input.ts";
import { type FleetPublisher, startFleetPublisher } from "../src/fleet/publisher.ts";
import { BATCH_HEADER } from "../src/fleet/_pump.ts";
import { checkFleetMessage } from "../clients/ts/src/_fleet-message.ts";

describe.skipIf(!haveNatsServer)("fleet through nats-server (needs /usr/sbin/nats-server)", () => {
  let nats: NatsServer;
  beforeAll(async () => {
    nats = await startNats();
  });
  afterAll(async () => {
    await nats?.close();
  });

  it("publishers started together against a new stream all start: one makes it, the others check it", async () => {
    const started = await Promise.allSettled(
      Array.from({ length: 32 }, () => startFleetPublisher({ servers: nats.url, stream: "RACE_TEST", prefix: "race" })),
    );
    expect(started.map((r) => (r.status === "rejected" ? String(r.reason) : "ok"))).toEqual(Array(32).fill("ok"));
    await Promise.all(started.map((r) => (r as PromiseFulfilledResult<FleetPublisher>).value.close()));
  });

  it("three servers, one consumer: every exit of every host exactly once, in per-host order", async () => {
    const names = ["web-1", "web-2", "db-1"];
    const servers = await Promise.all(names.map((n) => fleetServer(nats.url, n)));
    const consumer = collectFleet({ servers: nats.url, deliver: "all" });
    await sleep(1500);
    const produced = new Map<string, number>();
    const states: unknown[] = [];
    for (const [i, s] of servers.entries()) {
      await stopFleetServer(s);
      produced.set(names[i]!, s.fleet.state().produced);
      states.push(s.fleet.state());
    }
    await eventually(() => {
      const t = tally(consumer.events);
      return names.every((n) => (t.get(n)?.next ?? 1) - 1 >= produced.get(n)!);
    }, 15_000).catch((err: Error) => {
      const behind = names.map((n) => ({ host: n, produced: produced.get(n), ...tally(consumer.events).get(n) }));
      throw new Error(`${err.message}: ${JSON.stringify({ behind, states, error: String(consumer.error) })}`);
    });
    await consumer.stop();
    const t = tally(consumer.events);
    for (const n of names) {
      const h = t.get(n)!;
      expect(h.errors).toEqual([]);
      expect(produced.get(n)).toBeGreaterThan(1000);
      expect(h.received + h.lost).toBe(produced.get(n));
      expect(h.lost).toBe(0);
    }
  }, 40_000);

  it("a durable consumer stopped and restarted mid-stream misses nothing", async () => {
    const s = await fleetServer(nats.url, "durable-host", { fleet: { stream: "DURABLE_TEST", prefix: "dur" } });
    const o = { servers: nats.url, stream: "DURABLE_TEST", subjectPrefix: "dur", durable: "d1", ackWaitMs: 1000 };
    const first = collectFleet(o);
    await eventually(() => first.events.length > 500, 10_000);
    await first.stop();
    await sleep(1000); // the host keeps publishing while no one consumes
    const second = collectFleet(o);
    await sleep(500);
    await stopFleetServer(s);
    const produced = s.fleet.state().produced;
    const seqs = () => [...first.events, ...second.events].map((e) => Number(e.seq)).sort((a, b) => a - b);
    await eventually(() => new Set(seqs()).size >= produced, 15_000);
    await second.stop();
    // Each seq exactly once over both runs (no loss here: NATS was up), nothing before, nothing past produced.
    expect(seqs()).toEqual(Array.from({ length: produced }, (_, i) => i + 1));
    expect(first.events.length).toBeGreaterThan(500);
    expect(second.events.length).toBeGreaterThan(500);
  }, 40_000);

  it("nats-server killed and restarted: nothing lost silently, the gap arrives as an exact loss marker", async () => {
    const s = await fleetServer(nats.url, "outage-host", {
      exitRate: 3000,
      fleet: { stream: "OUTAGE_TEST", prefix: "out", buffer: 2000, ackTimeoutMs: 1000 },
    });
    const o = {
      servers: nats.url,
      stream: "OUTAGE_TEST",
      subjectPrefix: "out",
      durable: "watcher",
      deliver: "all" as const,
      ackWaitMs: 2000,
    };
    const consumer = collectFleet(o);
    await eventually(() => consumer.events.length > 300, 10_000);
    await nats.kill();
    await eventually(() => !s.fleet.state().connected, 5000);
    await sleep(3000); // 3000 exits/s into a queue of 2000: it overflows
    await nats.restart();
    await eventually(() => s.fleet.state().connected && s.fleet.state().pending === 0, 20_000);
    await sleep(500);
    await stopFleetServer(s);
    const state = s.fleet.state();
    await eventually(() => (tally(consumer.events).get("outage-host")?.next ?? 1) - 1 >= state.produced, 20_000);
    await consumer.stop();
    const t = tally(consumer.events).get("outage-host")!;

    expect(t.errors).toEqual([]);
    expect(t.received + t.lost).toBe(state.produced);
    // The queue overflowed while NATS was down: the drops arrived as loss markers, exactly.
    expect(state.dropped).toBeGreaterThan(0);
    expect(t.lost).toBe(state.dropped);
    expect(state.retries).toBeGreaterThan(0);
  }, 60_000);

  it("a publisher's messages name their batch, and the batch's first message holds its first seq", async () => {
    const s = await fleetServer(nats.url, "batch-host", { fleet: { stream: "BATCH_TEST", prefix: "bat" } });
    await eventually(() => s.fleet.state().published > 2000, 10_000);
    await stopFleetServer(s);
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.add("BATCH_TEST", { durable_name: "raw", ack_policy: AckPolicy.None });
    const batches = new Map<string, { first: number; seqs: number[] }[]>();
    const stored = (await jsm.streams.info("BATCH_TEST")).state.messages; // all of them: every batch whole
    const consumer = await jetstream(nc).consumers.get("BATCH_TEST", "raw");
    const msgs = await consumer.fetch({ max_messages: stored, expires: 5000 });
    for await (const m of msgs) {
      const batch = m.headers?.get(BATCH_HEADER) ?? "none";
      const seqs = checkFleetMessage(m.data).flatMap((e) => [e.first, e.last]);
      batches.set(batch, [...batches.get(batch) ?? [], { first: seqs[0]!, seqs }]);
    }
    await nc.close();
    expect([...batches.values()].flat().length).toBe(stored);
    expect(batches.size).toBeGreaterThan(10);
    for (const [batch, list] of batches) {
      const [first, last] = batch.split("-").map(Number) as [number, number];
      expect(list[0]!.first, batch).toBe(first); // the first message stored is the batch's first
      const all = list.flatMap((m) => m.seqs);
      expect(Math.min(...all), batch).toBe(first);
      expect(Math.max(...all), batch).toBe(last);
    }
  });

  it("a consumer started between two messages of a batch gets the rest at once, and no loss", async () => {
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    const pub = await craftedStream(nc, "MID_TEST", "mid");
    await pub(0, [1, 3], "1-4"); // before the consumer: not expected
    // Waits 35 s (the default reorder wait) on a gap that never fills; the test fails far sooner.
    const c = collectFleet({ servers: nats.url, stream: "MID_TEST", subjectPrefix: "mid" });
    await eventually(async () => (await jsm.streams.info("MID_TEST")).state.consumer_count > 0, 5000);
    await pub(1, [2, 4], "1-4");
    await pub(0, [5, 7], "5-8");
    await pub(1, [6, 8], "5-8");
    await eventually(() => c.events.length >= 6, 5000).catch(() => {
      throw new Error(`got ${c.events.map((e) => `${e.event.case} ${e.seq}`).join(", ") || "nothing"}`);
    });
    await sleep(200);
    await c.stop();
    await nc.close();
    expect(c.events.map((e) => `${e.event.case} ${e.seq}`)).toEqual(
      ["exit 2", "exit 4", "exit 5", "exit 6", "exit 7", "exit 8"],
    );
  });

  it("a durable consumer aborted with a message partly yielded finishes it first: the next one repeats nothing", async () => {
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    const pub = await craftedStream(nc, "DRAIN_TEST", "drain");
    // A 1 s ack wait: what was left unacked comes again within the test (and so do messages JetStream handed to the
    // first's pull as it ended, which its client dropped unread).
    const o = { servers: nats.url, stream: "DRAIN_TEST", subjectPrefix: "drain", durable: "drainer", ackWaitMs: 1000 };
    const seqs = (events: readonly FleetExitEvent[]) => events.map((e) => Number(e.seq));
    await pub(0, [1, 3], "1-4");
    const first = collectFleet(o);
    // 1 is yielded; 3 waits for 2, which is in the batch's other message: the first message is partly yielded.
    await eventually(() => first.events.length === 1, 5000);
    await sleep(100);
    expect(seqs(first.events)).toEqual([1]);
    const stopped = first.stop();
    await pub(1, [2, 4], "1-4");
    const t0 = Date.now();
    await stopped;
    expect(Date.now() - t0).toBeLessThan(1900); // ended once both messages were acked, not at the drain's bound
    expect(seqs(first.events)).toEqual([1, 2, 3, 4]);
    await pub(0, [5, 7], "5-8");
    await pub(1, [6, 8], "5-8");
    const second = collectFleet(o);
    await eventually(() => second.events.length >= 4, 5000);
    await sleep(1500); // past the ack wait: a repeat of the first's would have come
    await second.stop();
    // Each once, none of the first's again. In seq order unless JetStream delivers them as redeliveries (it does so
    // when it offered them to the first's pull after that ended), which come as they are: in order per CPU only.
    expect(seqs(second.events).sort((a, b) => a - b)).toEqual([5, 6, 7, 8]);

    // When the rest does not come within the drain's bound (2 s), the iteration ends anyway; the partly yielded
    // message stays unacked, to come again (at least once), and nothing is lost.
    const o2 = { ...o, durable: "drainer-2", ackWaitMs: 1000, deliver: "new" as const };
    const third = collectFleet(o2);
    await eventually(
      async () => (await jsm.consumers.info("DRAIN_TEST", "drainer-2").catch(() => null)) !== null,
      5000,
    );
    await pub(0, [9, 11], "9-12");
    await eventually(() => third.events.length === 1, 5000);
    const t1 = Date.now();
    await third.stop();
    expect(Date.now() - t1).toBeGreaterThanOrEqual(1900);
    expect(seqs(third.events)).toEqual([9]);
    await pub(1, [10, 12], "9-12");
    const fourth = collectFleet(o2);
    await eventually(() => new Set(seqs(fourth.events)).size >= 4, 5000);
    await fourth.stop();
    await nc.close();
    expect([...new Set(seqs(fourth.events))].sort((a, b) => a - b)).toEqual([9, 10, 11, 12]);
  });

  it("an abort ends an ordered consumer at once, and a durable one by the drain's bound even during its setup", async () => {
    const nc = await connect({ servers: nats.url });
    // A batch's first message whose partner never comes: 1 is yielded, 3 waits on the gap (for reorder.waitMs).
    await (await craftedStream(nc, "BOUND_TEST", "bound"))(0, [1, 3], "1-4");
    const o = { servers: nats.url, stream: "BOUND_TEST", subjectPrefix: "bound", reorder: { waitMs: 60_000 } };
    const ordered = collectFleet({ ...o, deliver: "all" });
    await eventually(() => ordered.events.length === 1, 5000);
    let t0 = Date.now();
    await ordered.stop();
    expect(Date.now() - t0).toBeLessThan(500);
    // Aborted while its consumer is being set up (on a connection of its own making it would be while connecting).
    for (const durable of [undefined, "bound-early"]) {
      const early = collectFleet({ ...o, servers: undefined, connection: nc, deliver: "all", durable });
      t0 = Date.now();
      await early.stop();
      expect(Date.now() - t0).toBeLessThan(500);
      expect(early.events).toEqual([]);
    }
    const late = collectFleet({ ...o, durable: "bound-late" });
    await eventually(() => late.events.length === 1, 5000);
    t0 = Date.now();
    await late.stop();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1900);
    expect(Date.now() - t0).toBeLessThan(4000); // the drain's 2 s, then the next tick (1 s at most)

    // With messages fetched and not yet read, and a loop body that takes its time: an ordered consumer stops after
    // the message in hand; a durable one reads on to its deadline only, not to the end of what was fetched.
    for (let i = 1; i <= 400; i++) {
      await jetstream(nc).publish("bound.g.exits.0", exitMsg([BigInt(i)]), { msgID: `g:r1:${i}` });
    }
    for (const durable of [undefined, "bound-slow"]) {
      const ctl = new AbortController();
      let after = 0, t1 = 0;
      for await (const _ of watchFleet({ ...o, deliver: "all", durable, signal: ctl.signal })) {
        if (ctl.signal.aborted) after++;
        else (ctl.abort(), t1 = Date.now());
        await sleep(20);
      }
      const took = Date.now() - t1;
      expect(durable === undefined ? took : 0, `${durable}: ${after} events in ${took} ms`).toBeLessThan(500);
      expect(took, `${durable}: ${after} events in ${took} ms`).toBeLessThan(4000);
    }
    await nc.close();
  });

  it("an ordered consumer is gone from the server once its iteration ends (abort, break, or an abort in setup)", async () => {
    const nc = await connect({ servers: nats.url });
    await (await craftedStream(nc, "GONE_TEST", "gone"))(0, [1, 2], "1-2");
    const jsm = await jetstreamManager(nc);
    const names = async () => (await jsm.consumers.list("GONE_TEST").next()).map((c) => c.name);
    const o = { servers: nats.url, stream: "GONE_TEST", subjectPrefix: "gone", deliver: "all" as const };
    const aborted = collectFleet(o);
    await eventually(() => aborted.events.length === 2, 5000);
    const [running] = await names(); // the ordered consumer, while the iteration runs
    // A process killed before its iteration ends leaves it to the server, which drops it after a minute unpulled.
    expect((await jsm.consumers.info("GONE_TEST", running!)).config.inactive_threshold).toBe(60e9);
    await aborted.stop();
    expect(await names()).toEqual([]);
    for await (const _ of watchFleet(o)) break;
    expect(await names()).toEqual([]);
    // Aborted while its consumer is made (the abort lands before the consumer exists).
    for (let i = 0; i < 5; i++) await collectFleet({ ...o, servers: undefined, connection: nc }).stop();
    expect(await names()).toEqual([]);
    // A durable consumer stays: the next iteration resumes it.
    const kept = collectFleet({ ...o, durable: "gone-durable" });
    await eventually(() => kept.events.length === 2, 5000);
    await kept.stop();
    expect(await names()).toEqual(["gone-durable"]);
    await nc.close();
  });

  it("an ordered consumer ended as nats.js remakes it after a server restart is gone too", async () => {
    const nc = await connect({ servers: nats.url });
    await (await craftedStream(nc, "REMADE_TEST", "remade"))(0, [1, 2], "1-2");
    await nc.close();
    const left: string[][] = [];
    for (let i = 0; i < 3; i++) {
      // The server loses the ordered consumer (memory storage); on reconnect nats.js remakes it under its next name,
      // even when the iteration ends meanwhile. Ended right at the reconnect, the first delete finds nothing.
      const ctl = new AbortController();
      let got = 0;
      const done = (async () => {
        const o = { servers: nats.url, stream: "REMADE_TEST", subjectPrefix: "remade", deliver: "all" as const };
        const onStatus = (st: { type: string }) => void (st.type === "reconnect" && ctl.abort());
        const connectOptions = { reconnectTimeWait: 100, maxReconnectAttempts: -1 };
        for await (const _ of watchFleet({ ...o, signal: ctl.signal, onStatus, connectOptions })) got++;
      })();
      await eventually(() => got === 2, 5000);
      await nats.kill();
      await nats.restart();
      await done;
      await sleep(300);
      const check = await connect({ servers: nats.url });
      left.push((await (await jetstreamManager(check)).consumers.list("REMADE_TEST").next()).map((c) => c.name));
      await check.close();
    }
    expect(left).toEqual([[], [], []]);
  }, 60_000);

  it("a message whose last event repeats another's is acked only after its new events are yielded", async () => {
    const nc = await connect({ servers: nats.url });
    await (await jetstreamManager(nc)).streams.add({ name: "OVERLAP_TEST", subjects: ["ovl.*.exits.*"] });
    const js = jetstream(nc);
    const o = { connection: nc, stream: "OVERLAP_TEST", subjectPrefix: "ovl", durable: "ovl", ackWaitMs: 1000 };
    await collectFleet(o).stop(); // the durable consumer, with a 1 s ack wait
    // A publisher gone wrong: B repeats A's 3. In seq order: 1 (A), 2 (B), 3 (A; B's is a repeat).
    await js.publish("ovl.h.exits.0", exitMsg([1n, 3n]), { msgID: "h:r1:1" });
    await js.publish("ovl.h.exits.1", exitMsg([2n, 3n]), { msgID: "h:r1:2" });
    const got: number[] = [];
    for await (const ev of watchFleet(o)) {
      got.push(Number(ev.seq));
      if (ev.seq === 2n) break; // before 3: neither message may be acked yet
    }
    expect(got).toEqual([1, 2]);
    const next = collectFleet(o);
    await eventually(() => next.events.some((e) => e.seq === 2n) && next.events.some((e) => e.seq === 3n), 5000)
      .catch(() => {
        throw new Error(`then got ${next.events.map((e) => e.seq)}: 2 was acked before the loop took it`);
      });
    await next.stop();

    // D repeats C's 13, held on the gap at 12: it is still acked once its own 14 is yielded.
    await js.publish("ovl.h.exits.0", exitMsg([11n]), { msgID: "h:r1:11" });
    await js.publish("ovl.h.exits.0", exitMsg([13n, 15n]), { msgID: "h:r1:13" });
    await js.publish("ovl.h.exits.1", exitMsg([13n, 14n]), { msgID: "h:r1:13b" });
    await js.publish("ovl.h.exits.0", exitMsg([12n]), { msgID: "h:r1:12" });
    const third = collectFleet(o);
    await eventually(() => third.events.some((e) => e.seq === 15n), 5000);
    await third.stop();
    await sleep(1500); // past the ack wait: whatever was left unacked comes again
    const fourth = collectFleet(o);
    await sleep(1000);
    await fourth.stop();
    await nc.close();
    expect(fourth.events.map((e) => Number(e.seq)).filter((seq) => seq > 10)).toEqual([]);
  });

  it("openFleetInput (watch --nats --hosts): a glob of hosts, events with their host", async () => {
    const servers = await Promise.all(
      ["app-1", "app-2", "db-9"].map((n) =>
        fleetServer(nats.url, n, { fleet: { stream: "INPUT_TEST", prefix: "in" } })
      ),
    );
    const ctl = new AbortController();
    const input = await openFleetInput({
      nats: nats.url,
      hosts: "app-*",
      stream: "INPUT_TEST",
      subjectPrefix: "in",
      cpus: [0, 1],
      signal: ctl.signal,
    });
    const hosts = new Set<string>(), cpus = new Set<number>();
    let n = 0;
    try {
      for await (const ev of input.events) {
        hosts.add(ev.host);
        if (ev.event.case === "exit") cpus.add(ev.cpu);
        if (++n === 2000) break;
      }
    } finally {
      ctl.abort();
      await input.release();
      await Promise.all(servers.map(stopFleetServer));
    }
    expect([...hosts].sort()).toEqual(["app-1", "app-2"]);
    expect([...cpus].every((c) => c === 0 || c === 1)).toBe(true);
  }, 30_000);
});
