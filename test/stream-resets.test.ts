/**
 * SubscribeExits streams when their clients leave: every stream must end,
 * in the registry (its stream count) and in the RPC metrics (ended
 * SubscribeExits calls in taskwire_rpc_requests_total, counted when the
 * response's message stream is closed: until then the handler's generators,
 * context, last batch, response and socket are held). A response whose write
 * is waiting for 'drain' when the client resets must end too: a reset
 * HTTP/1.1 response emits only 'close' (found in review: a route that waited
 * for 'drain' or 'error' held such streams for ever). Browsers (an Origin)
 * and programs (none) are both covered.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { connect as netConnect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { SubscribeExitsRequestSchema } from "../src/gen/taskwire/v1/taskstats_pb.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { eventually, type Running, sleep, startServerListening } from "./helpers.ts";

const body = Buffer.from(
  encodeEnvelope(0, toBinary(SubscribeExitsRequestSchema, create(SubscribeExitsRequestSchema, { cpumask: "0-1" }))),
);

function open(port: number, headers: string): { socket: Socket; got: () => number } {
  const socket = netConnect(port, "127.0.0.1");
  let n = 0;
  socket.on("data", (d) => (n += d.length));
  socket.on("error", () => {});
  socket.write(
    "POST /taskwire.v1.TaskStats/SubscribeExits HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers +
      `Content-Type: application/connect+proto\r\nConnect-Protocol-Version: 1\r\nContent-Length: ${body.length}\r\n\r\n`,
  );
  socket.write(body);
  return { socket, got: () => n };
}

async function endedSubscribes(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  for (const m of text.matchAll(/^taskwire_rpc_requests_total\{[^}]*method="SubscribeExits"[^}]*\} (\d+)/gm)) {
    sum += Number(m[1]);
  }
  return sum;
}

/** Waits (up to 8 s; the metrics render is cached for 1 s) for `n` ended SubscribeExits calls; returns the count. */
async function ended(url: string, n: number): Promise<number> {
  let count = 0;
  await eventually(async () => (count = await endedSubscribes(url)) === n, 8000).catch(() => {});
  return count;
}

let running: Running | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

describe.each([
  ["a program (no Origin)", ""],
  ["a browser (Origin)", "Origin: http://127.0.0.1\r\n"],
])("%s", (_name, origin) => {
  it("10 clients stop reading, then reset: every stream ends", async () => {
    running = await startServerListening(createSimSource({ cpus: 2, exitRate: 8000, seed: 3 }), {}, {}, {});
    const streams = Array.from({ length: 10 }, () => open(running!.listening.port, origin));
    await eventually(() => streams.every((s) => s.got() > 1024), 15_000);
    for (const s of streams) s.socket.pause();
    await sleep(3000); // the server's writes back up: a write waits for 'drain'
    for (const s of streams) s.socket.resetAndDestroy();
    await eventually(() => running!.server.stats().streams === 0, 5000);
    expect(await ended(running.url, 10)).toBe(10);
  }, 40_000);

  it("3 rounds of 40 young streams reading, reset at once: every stream ends", async () => {
    running = await startServerListening(createSimSource({ cpus: 2, exitRate: 8000, seed: 3 }), {}, {}, {
      acceptsPerTurn: 1,
    });
    for (let round = 0; round < 3; round++) {
      const streams = Array.from({ length: 40 }, () => open(running!.listening.port, origin));
      await eventually(() => streams.every((s) => s.got() > 1024), 15_000);
      for (const s of streams) s.socket.resetAndDestroy();
      await eventually(() => running!.server.stats().streams === 0, 5000);
    }
    expect(await ended(running.url, 120)).toBe(120);
  }, 60_000);

  it("streams pipelined on one HTTP/1.1 connection, which the client then resets: every stream ends", async () => {
    running = await startServerListening(createSimSource({ cpus: 2, exitRate: 8000, seed: 3 }), {}, {}, {});
    const request = "POST /taskwire.v1.TaskStats/SubscribeExits HTTP/1.1\r\nHost: 127.0.0.1\r\n" + origin +
      `Content-Type: application/connect+proto\r\nConnect-Protocol-Version: 1\r\nContent-Length: ${body.length}\r\n\r\n`;
    const sockets = Array.from({ length: 3 }, () => {
      const socket = netConnect(running!.listening.port, "127.0.0.1");
      socket.on("error", () => {});
      // Two streams in one write: the second one's response waits behind the first, which never ends.
      socket.write(Buffer.concat([Buffer.from(request), body, Buffer.from(request), body]));
      return socket;
    });
    await eventually(() => running!.server.stats().streams === 6, 5000);
    for (const s of sockets) s.resetAndDestroy();
    await eventually(() => running!.server.stats().streams === 0, 5000);
    expect(await ended(running.url, 6)).toBe(6);
  }, 40_000);
});
