/**
 * The fleet publisher against NATS limits it did not set, on a real
 * nats-server: a server max_payload or a stream max_msg_size smaller than a
 * full batch's message. A message NATS refuses for its size is refused
 * however often it is retried, and the pump retries before taking anything
 * newer: it must cut its messages to fit, or refuse to start when not even
 * one exit's message would.
 */
import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { checkFleetOptions, startFleetPublisher, StreamConfigError } from "../src/fleet/publisher.ts";
import { checkCompatible, streamConfig } from "../src/fleet/_stream-config.ts";
import type { StreamConfig } from "@nats-io/jetstream";
import {
  collectFleet,
  fleetServer,
  haveNatsServer,
  NATS_SERVER,
  type NatsServer,
  startNats,
  stopFleetServer,
  tally,
} from "./fleet-nats.ts";
import { eventually } from "./helpers.ts";

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
    await eventually(() => {
      const t = tally(c.events).get("small");
      return t !== undefined && t.received + t.lost >= queued;
    }, 20_000);
    await c.stop();
    const t = tally(c.events).get("small")!;
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
