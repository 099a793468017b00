/**
 * Young streams wait their turn (runtime/_young-streams.ts): while a stream
 * has written less than it takes to fill a stalled client's transport, its
 * writes share a bounded batch per event-loop turn, oldest stream first, and
 * its connection's kernel send buffer is small; once it has written more, it
 * is written like any other and its send buffer is raised. Against a real
 * server: a subscriber that never reads takes in far less than the 256 KiB
 * send buffer it used to fill, and a reading one gets the full buffer back.
 */
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { TaskStats } from "../src/gen/taskwire/v1/taskstats_pb.ts";
import { type Listening, listenNode } from "../src/runtime/node.ts";
import { createYoungStreams, type PacedResponse } from "../src/runtime/_young-streams.ts";
import { createServer } from "../src/server/server.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { eventually, hasSs, sendBuffers, sleep } from "./helpers.ts";

const turn = () => new Promise<void>((r) => setImmediate(r));

// A response that records what it was asked to write and when it was told to go on.
function fakeResponse(name: string, log: string[], socket: object = {}): PacedResponse & EventEmitter {
  const res = new EventEmitter() as PacedResponse & EventEmitter & { destroyed: boolean; socket: Socket };
  Object.assign(res, { destroyed: false, socket });
  res.write = (chunk: unknown) => (log.push(`${name}:${(chunk as Uint8Array).byteLength}`), true);
  res.on("drain", () => log.push(`${name} drained`));
  return res;
}

describe("young streams' writes", () => {
  it("go through a batch per turn; the rest wait for 'drain' in a later turn, oldest stream first", async () => {
    const young = createYoungStreams({ writesPerTurn: 2, graduateBytes: 1000 });
    const log: string[] = [];
    const [a, b, c] = ["a", "b", "c"].map((n) => fakeResponse(n, log));
    for (const r of [a!, b!, c!]) young.track(r);
    // c writes first in this turn, then b, then a: two go through, a is told to wait.
    expect([c!.write(new Uint8Array(10)), b!.write(new Uint8Array(10)), a!.write(new Uint8Array(10))]).toEqual([
      true,
      true,
      false,
    ]);
    expect(young.waiting).toBe(1);
    // Past the batch both c and b now wait too; the oldest (a, tracked first) is woken first.
    expect([c!.write(new Uint8Array(10)), b!.write(new Uint8Array(10))]).toEqual([false, false]);
    await turn();
    expect(log.filter((l) => l.endsWith("drained"))).toEqual(["a drained", "b drained"]);
    await turn();
    expect(log.filter((l) => l.endsWith("drained"))).toEqual(["a drained", "b drained", "c drained"]);
    expect(young.waiting).toBe(0);
    expect(log.filter((l) => !l.endsWith("drained"))).toHaveLength(5); // every write was written, none dropped
  });

  it("stop being paced once a stream has written graduateBytes, which raises its connection's send buffer once", () => {
    const graduated: object[] = [];
    const young = createYoungStreams({ writesPerTurn: 1, graduateBytes: 100, graduate: (s) => graduated.push(s) });
    const log: string[] = [];
    const socket = {};
    const [a, b] = ["a", "b"].map((n) => fakeResponse(n, log, socket));
    young.track(a!);
    young.track(b!);
    expect(a!.write(new Uint8Array(60))).toBe(true);
    expect(a!.write(new Uint8Array(60))).toBe(true); // 120 bytes: grown up, past this turn's batch
    for (let i = 0; i < 5; i++) expect(a!.write(new Uint8Array(60))).toBe(true);
    expect(b!.write(new Uint8Array(120))).toBe(true); // graduates at once; same connection: raised only once
    expect(graduated).toEqual([socket]);
    expect(young.waiting).toBe(0);
  });

  it("leave a response that closed while it waited alone", async () => {
    const young = createYoungStreams({ writesPerTurn: 1, graduateBytes: 1000 });
    const log: string[] = [];
    const [a, b] = ["a", "b"].map((n) => fakeResponse(n, log));
    young.track(a!);
    young.track(b!);
    a!.write(new Uint8Array(1));
    expect(b!.write(new Uint8Array(1))).toBe(false);
    (b as { destroyed: boolean }).destroyed = true;
    await turn();
    expect(log).not.toContain("b drained");
    expect(young.waiting).toBe(0);
  });
});

describe.skipIf(!hasSs || process.platform !== "linux")("a young stream's send buffer (needs ss from iproute2)", () => {
  let listening: Listening | undefined;
  afterEach(async () => {
    await listening?.close();
    listening = undefined;
  });

  it("is small while it has not read much, and the configured 256 KiB once it has read 1 MiB", async () => {
    const source = createSimSource({ cpus: 2, exitRate: 0, seed: 3 }) as SimSource;
    listening = await listenNode(createServer({ source }), { port: 0 });
    const client = createClient(TaskStats, createConnectTransport({ baseUrl: listening.url, httpVersion: "1.1" }));
    const ctl = new AbortController();
    // A subscriber that takes its opening message and then never reads again.
    const idle = client.subscribeExits({ cpumask: "0-1" }, { signal: ctl.signal })[Symbol.asyncIterator]();
    await idle.next();
    const [idlePort] = [...sendBuffers(listening.port).keys()];
    expect(idlePort).toBeDefined();
    // One that reads everything.
    let received = 0;
    const reading = (async () => {
      for await (const m of client.subscribeExits({ cpumask: "0-1" }, { signal: ctl.signal })) {
        received += m.events.length;
      }
    })().catch(() => {});
    const producing = setInterval(() => source.kernel.exitNow(500), 5);
    try {
      await eventually(() => received > 8000, 20_000); // ~300 bytes an event: past 1 MiB
      await sleep(200);
      const buffers = sendBuffers(listening.port);
      expect(buffers.get(idlePort!)).toBeLessThanOrEqual(64 * 1024); // 32 KiB young, doubled by the kernel
      const others = [...buffers].filter(([port]) => port !== idlePort).map(([, tb]) => tb);
      expect(others).toContain(512 * 1024); // graduated: the default 256 KiB, doubled
    } finally {
      clearInterval(producing);
      ctl.abort();
      await reading;
    }
  }, 30_000);
});
