/**
 * The fleet publisher against NATS limits it did not set, on a real
 * nats-server: a server max_payload or a stream max_msg_size smaller than a
 * full batch's message. A message NATS refuses for its size is refused
 * however often it is retried, and the pump retries before taking anything
 * newer: it must cut its messages to fit, or refuse to start when not even
 * one exit's message would; and when a limit is lowered while it runs, cut
 * them again, dropping (as counted loss) an exit no message can hold.
 */
import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { connect } from "@nats-io/transport-node";
import { jetstream, type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import {
  checkFleetOptions,
  type FleetOptions,
  startFleetPublisher,
  StreamConfigError,
} from "../src/fleet/publisher.ts";
import { checkCompatible, streamConfig } from "../src/fleet/_stream-config.ts";
import { batchHeader, wireBytes } from "../src/fleet/_message-cutter.ts";
import type { StreamConfig } from "@nats-io/jetstream";
import {
  collectFleet,
  fleetServer,
  haveNatsServer,
  NATS_SERVER,
  type NatsServer,
  startNats,
  stopFleetServer,
  tallied,
} from "./fleet-nats.ts";
import { eventually } from "./helpers.ts";

const root = new URL("..", import.meta.url).pathname;

// What each test started, stopped after it, last first.
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

// A nats-server with `config` as its configuration file, stopped (and its directory removed) after the test.
async function natsWith(config: string): Promise<NatsServer> {
  const dir = mkdtempSync(join(tmpdir(), "taskwire-nats-conf-"));
  writeFileSync(join(dir, "nats.conf"), config);
  const nats = await startNats(["-c", join(dir, "nats.conf")]);
  cleanup.push(async () => (await nats.close(), rmSync(dir, { recursive: true, force: true })));
  return nats;
}

// An outage: the fleet server's queue fills while NATS is down, and once it is back the pump takes 1,024 events at
// once (~60 KB per CPU); returns once everything produced before it came back is published or counted dropped.
async function outage(nats: NatsServer, s: Awaited<ReturnType<typeof fleetServer>>): Promise<number> {
  await eventually(() => s.fleet.state().published > 100, 10_000);
  await nats.kill();
  await eventually(() => s.fleet.state().queued > 4096, 10_000);
  await nats.restart();
  const queued = s.fleet.state().produced;
  await eventually(() => s.fleet.state().published >= queued - s.fleet.state().dropped, 20_000);
  return queued;
}

// A nats-server taking messages up to 16 MiB, a fleet server "good" publishing to it and a reader of every host.
async function largePayloads(onBadMessage: (host: string, reason: string) => void) {
  const nats = await natsWith(`max_payload: ${16 * 2 ** 20}\n`);
  const good = await fleetServer(nats.url, "good", { exitRate: 200 });
  cleanup.push(() => stopFleetServer(good));
  const nc = await connect({ servers: nats.url });
  cleanup.push(() => nc.close());
  const c = collectFleet({ servers: nats.url, onBadMessage: (b) => onBadMessage(b.host, b.reason) });
  cleanup.push(() => c.stop());
  return { c, js: jetstream(nc) };
}

describe("the publisher's intervals", () => {
  it("are integers in range: NaN would log every failed publish, or never read the limits again", () => {
    const o = { servers: "nats://127.0.0.1:1" };
    expect(() => checkFleetOptions({ ...o, problemLogMs: NaN })).toThrow(
      new RangeError("fleet option problemLogMs must be an integer >= 1, got NaN"),
    );
    expect(() => checkFleetOptions({ ...o, limitsRefreshMs: NaN })).toThrow(
      new RangeError("fleet option limitsRefreshMs must be an integer >= 1000, got NaN"),
    );
    expect(() => checkFleetOptions({ ...o, limitsRefreshMs: 999 })).toThrow(
      /limitsRefreshMs must be an integer >= 1000/,
    );
    expect(() => checkFleetOptions({ ...o, limitsRefreshMs: 1000, problemLogMs: 1 })).not.toThrow();
  });
});

describe("an existing stream's max_msg_size", () => {
  const settings = checkFleetOptions({ servers: "nats://127.0.0.1:1" });
  const existing = (maxMsgSize: number) => ({ ...streamConfig(settings), max_msg_size: maxMsgSize }) as StreamConfig;

  it("under one exit's message is refused; 0 and -1 are no limit, as the publisher reads them", () => {
    expect(() => checkCompatible(existing(1000), settings)).toThrow(StreamConfigError);
    expect(() => checkCompatible(existing(8191), settings)).toThrow(/max message size of 8191 bytes/);
    for (const none of [0, -1]) expect(() => checkCompatible(existing(none), settings)).not.toThrow();
    expect(() => checkCompatible(existing(8192), settings)).not.toThrow();
  });
});

describe.skipIf(!haveNatsServer)(`the fleet publisher under NATS's size limits (needs ${NATS_SERVER})`, () => {
  it("max_payload 16 KiB: full batches after an outage are cut to fit, and every exit is accounted", async () => {
    const nats = await natsWith("max_payload: 16384\n");
    const s = await fleetServer(nats.url, "small", { exitRate: 5000 });
    cleanup.push(() => stopFleetServer(s));
    const queued = await outage(nats, s);
    const st = s.fleet.state();
    expect(st.lastError === "" || !/max_payload/.test(st.lastError), st.lastError).toBe(true);
    // Everything stored once, in order: received + lost = produced, with the lost ones exactly the dropped ones.
    const c = collectFleet({ servers: nats.url, deliver: "all", reorder: { waitMs: 1000 } });
    const t = await tallied(c.events, "small", queued);
    await c.stop();
    expect(t.errors).toEqual([]);
  }, 60_000);

  it("refuses to start, saying what to raise, where one exit's message could not fit", async () => {
    const tiny = await natsWith("max_payload: 4096\n");
    await expect(startFleetPublisher({ servers: tiny.url })).rejects.toThrow(
      /max_payload is 4096 bytes, less than the 8192 one exit's message may need; raise max_payload/,
    );
    const nats = await natsWith("");
    const nc = await connect({ servers: nats.url });
    cleanup.push(() => nc.close());
    await (await jetstreamManager(nc)).streams.add({
      name: "SMALL",
      subjects: ["taskwire.*.exits.*"],
      max_msg_size: 1000,
    });
    const err = await startFleetPublisher({ servers: nats.url, stream: "SMALL" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StreamConfigError);
    expect((err as Error).message).toMatch(/max message size of 1000 bytes.*nats stream edit SMALL --max-msg-size/);
  }, 30_000);

  it("a stream's max_msg_size of 16 KiB: messages are cut to it", async () => {
    const nats = await natsWith("");
    const nc = await connect({ servers: nats.url });
    cleanup.push(() => nc.close());
    await (await jetstreamManager(nc)).streams.add({
      name: "TASKWIRE_EXITS",
      subjects: ["taskwire.*.exits.*"],
      max_msg_size: 16384,
      duplicate_window: 120e9,
    });
    const s = await fleetServer(nats.url, "small", { exitRate: 5000 });
    cleanup.push(() => stopFleetServer(s));
    await outage(nats, s);
    expect(s.fleet.state().lastError).not.toMatch(/maximum|size/i);
  }, 60_000);
});

// A fleet server "h" publishing at `exitRate` into a fresh nats-server, with its log, and a manager of its stream.
async function publishing(exitRate: number, fleet: Partial<FleetOptions> = {}) {
  const nats = await natsWith("");
  const lines: string[] = [];
  const log = (level: string, text: string) => void lines.push(`${level} ${text}`);
  const s = await fleetServer(nats.url, "h", { exitRate, fleet: { log, ...fleet } });
  cleanup.push(() => stopFleetServer(s));
  const nc = await connect({ servers: nats.url });
  cleanup.push(() => nc.close());
  await eventually(() => s.fleet.state().published > 200, 10_000);
  return { nats, s, lines, jsm: await jetstreamManager(nc) };
}

function setMaxMsgSize(jsm: JetStreamManager, bytes: number) {
  return jsm.streams.update("TASKWIRE_EXITS", { max_msg_size: bytes });
}

// Stops `s` and reads its whole stream: every seq exactly once, in order, the lost ones exactly those it dropped.
// `waitMs`: how long the reader waits on a gap (a message sent again may be stored seconds of messages later).
async function expectAccounted(url: string, s: Awaited<ReturnType<typeof fleetServer>>, waitMs = 1000) {
  await stopFleetServer(s);
  const state = s.fleet.state();
  const c = collectFleet({ servers: url, deliver: "all", reorder: { waitMs } });
  cleanup.push(() => c.stop());
  const t = await tallied(c.events, "h", state.produced);
  expect(t.errors).toEqual([]);
  expect(t.received + t.lost).toBe(state.produced);
  expect(t.lost).toBe(state.dropped);
  return { t, events: c.events };
}

describe.skipIf(!haveNatsServer)(`a limit lowered while the publisher runs (needs ${NATS_SERVER})`, () => {
  it("the stream's max_msg_size: messages refused for their size are cut again, publishing resumes", async () => {
    const { nats, s, lines, jsm } = await publishing(5000);
    await setMaxMsgSize(jsm, 2048);
    // Messages cut to the old limit are refused (and would be for ever); the limit is read again, they are cut to it.
    const reread =
      "info fleet: stream TASKWIRE_EXITS's max_msg_size is now 2048 bytes (was no limit); messages are cut to it";
    await eventually(() => lines.includes(reread), 10_000);
    expect(s.fleet.state().failures["refused"]).toBeGreaterThan(0);
    const at = s.fleet.state().published;
    await eventually(() => s.fleet.state().published > at + 2000 && s.fleet.state().pending < 64, 20_000);
    await expectAccounted(nats.url, s);
  }, 60_000);

  it("raised again, it is read again while it cuts messages (not only on a refusal): messages grow back", async () => {
    const { nats, s, lines, jsm } = await publishing(5000, { limitsRefreshMs: 1000 });
    await setMaxMsgSize(jsm, 2048);
    await eventually(() => lines.some((l) => l.includes("max_msg_size is now 2048 bytes")), 10_000);
    await setMaxMsgSize(jsm, -1);
    // Nothing is refused now: only the refresh reads it.
    await eventually(() => lines.some((l) => l.includes("max_msg_size is now no limit (was 2048 bytes)")), 10_000);
    const after = (await jsm.streams.info("TASKWIRE_EXITS")).state.last_seq;
    const nc = await connect({ servers: nats.url });
    cleanup.push(() => nc.close());
    const consumer = await jetstream(nc).consumers.get("TASKWIRE_EXITS", { opt_start_seq: after + 1 });
    let largest = 0;
    for await (const m of await consumer.consume()) {
      largest = Math.max(largest, m.data.length);
      if (largest > 2048 || m.info.streamSequence > after + 5000) break;
    }
    expect(largest).toBeGreaterThan(2048);
    // Nothing is dropped here, so a gap is only a message refused for its size and sent again a little later in
    // the stream; the reader waits longer on it than 1 s, which once ran out on a loaded machine (seq 10912 came
    // late, after 10956) and could not be made to again.
    await expectAccounted(nats.url, s, 10_000);
  }, 60_000);

  it("below one exit: that exit is dropped as a counted loss, logged once; the exits after it go on", async () => {
    const { nats, s, lines, jsm } = await publishing(1000);
    // 1000 bytes with headers holds the sim's exits of one TaskStats (~300 bytes), not those of two (~550).
    await setMaxMsgSize(jsm, 1000);
    await eventually(() => s.fleet.state().dropped > 10, 15_000);
    const at = s.fleet.state().published;
    await eventually(() => s.fleet.state().published > at + 500 && s.fleet.state().failing === "", 15_000);
    const warned = lines.filter((l) => l.includes("fits in no message"));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatch(/1000 bytes with headers.*max_msg_size \(1000 bytes\): raise it \(nats stream edit/);
    const { t, events } = await expectAccounted(nats.url, s);
    expect(t.lost).toBeGreaterThan(10);
    // Lost one at a time, each its own seq, with exits delivered after them.
    const lost = events.filter((e) => e.event.case === "lost");
    expect(lost.every((e) => e.event.case === "lost" && e.event.value.firstSeq === e.event.value.lastSeq)).toBe(true);
    const exitsAfter = events.slice(events.indexOf(lost[0]!)).filter((e) => e.event.case === "exit");
    expect(exitsAfter.length).toBeGreaterThan(100);
  }, 60_000);
});

describe.skipIf(!haveNatsServer)(`a limit below a loss marker's message (needs ${NATS_SERVER})`, () => {
  it(
    "a message's size is counted as NATS counts it, headers included: taken at that limit, refused a byte under",
    async () => {
      const nats = await natsWith("");
      const nc = await connect({ servers: nats.url });
      cleanup.push(() => nc.close());
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: "EXACT", subjects: ["exact.>"] });
      const js = jetstream(nc);
      for (const [seq, resent] of [[1234, undefined], [5678, 987654]] as const) {
        const payload = new Uint8Array(19).fill(7);
        const m = { seq, cpu: 0, subject: "exact.0", payload, msgID: `h:0123abcd:${seq}`, events: 1 };
        const bytes = wireBytes({ ...m, headers: batchHeader(`${seq}-${seq + 9}`, resent) });
        const publish = () =>
          js.publish(m.subject, payload, { msgID: m.msgID, headers: batchHeader(`${seq}-${seq + 9}`, resent) });
        await jsm.streams.update("EXACT", { max_msg_size: bytes - 1 });
        await expect(publish()).rejects.toThrow(/message size exceeds maximum allowed/);
        await jsm.streams.update("EXACT", { max_msg_size: bytes });
        await expect(publish()).resolves.toMatchObject({ seq: expect.any(Number) });
      }
    },
    30_000,
  );

  it(
    "those markers are not sent again: the pump goes on, counts them, warns once; raised, publishing resumes",
    async () => {
      const { nats, s, lines, jsm } = await publishing(1000);
      // 64 bytes hold no message at all (a loss marker's headers alone take about 70): every exit is dropped, and its
      // marker refused. Retried before anything newer, one such marker stopped the publisher until the limit was raised.
      await setMaxMsgSize(jsm, 64);
      await eventually(() => s.fleet.state().unsent > 1000 && s.fleet.state().queued < 500, 20_000);
      // Operators see them: GetInfo's fleet.unsent and /metrics' taskwire_fleet_unsent_total (counted in dropped too).
      const unsent = s.fleet.state().unsent;
      const info = (await s.client.getInfo({})).fleet;
      expect(Number(info?.unsent)).toBeGreaterThanOrEqual(unsent);
      expect(Number(info?.dropped)).toBeGreaterThanOrEqual(unsent);
      const metrics = await (await fetch(`${s.url}/metrics`)).text();
      expect(Number(/^taskwire_fleet_unsent_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(unsent);
      const cli = await promisify(execFile)("node", [join(root, "bin/taskwire.js"), "info", "--url", s.url]);
      expect(cli.stdout).toMatch(/\d+ seq\(s\) unsent \(.*: raise the NATS server's max_payload or the stream's/);
      expect(s.fleet.state().pending).toBeLessThanOrEqual(64);
      const warned = lines.filter((l) => l.includes("NATS refused the loss marker"));
      expect(warned).toHaveLength(1);
      expect(warned[0]).toMatch(/it is not published.*max_msg_size \(64 bytes\): raise it \(nats stream edit/);
      await setMaxMsgSize(jsm, -1);
      const at = s.fleet.state().published;
      await eventually(() => s.fleet.state().published > at + 500 && s.fleet.state().failing === "", 15_000);
      // Every seq once, in order: the unsent ones as a gap the consumer reports lost, all of them counted dropped.
      const { t } = await expectAccounted(nats.url, s);
      expect(t.lost).toBeGreaterThanOrEqual(s.fleet.state().unsent);
    },
    60_000,
  );
});

describe.skipIf(!haveNatsServer)(`watchFleet on a server that takes large messages (needs ${NATS_SERVER})`, () => {
  it("one message over 8 MiB (max_payload 16 MiB) is refused as bad; it does not stop the consumer", async () => {
    const bad: string[] = [];
    const { c, js } = await largePayloads((host, reason) => bad.push(`${host}: ${reason}`));
    const goodSeqs = () => c.events.filter((e) => e.host === "good").length;
    await eventually(() => goodSeqs() > 20, 10_000);
    await js.publish("taskwire.evil.exits.0", new Uint8Array(9 * 2 ** 20).fill(0xff), { timeout: 20_000 });
    const before = goodSeqs();
    await eventually(() => goodSeqs() > before + 200 && bad.length === 1, 15_000);
    expect(bad[0]).toMatch(/^evil: /);
  }, 60_000);
});

describe.skipIf(!haveNatsServer)(`watchFleet against a message bomb (needs ${NATS_SERVER})`, () => {
  it("a 12 MB message of 3 million tiny events is refused by its size, before it is decoded", async () => {
    const bad: string[] = [];
    const { c, js } = await largePayloads((_, reason) => bad.push(reason));
    await eventually(() => c.events.some((e) => e.host === "good"), 10_000);
    const bomb = (n: number) => {
      const b = new Uint8Array(n * 4);
      for (let i = 0; i < n; i++) b.set([0x0a, 0x02, 0x08, 0x01], i * 4); // events { seq: 1 }
      return b;
    };
    await js.publish("taskwire.evil.exits.0", bomb(3_000_000), { timeout: 20_000 });
    await js.publish("taskwire.evil.exits.1", bomb(500_000), { timeout: 20_000 }); // 2 MB: counted, not decoded
    await eventually(() => bad.length === 2, 15_000);
    expect(bad[0]).toMatch(/^12000000 bytes, more than the 4194304/);
    expect(bad[1]).toMatch(/^500000 events, more than the 1024/);
  }, 60_000);
});
