/**
 * Review 21: SubscribeExits streams on the direct route (runtime/node.ts) and
 * the pre-encoded handler (server/pre-encoded-streams.ts) when clients leave:
 * many young streams (paced by _young-streams.ts) reset at once. Every
 * stream must end: the registry's count, and the RPC metrics' count of
 * ended SubscribeExits calls (taskwire_rpc_requests_total, counted when the
 * response's message stream is closed).
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { connect as netConnect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { SubscribeExitsRequestSchema } from "../src/gen/taskwire/v1/taskstats_pb.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { eventually, type Running, startServerListening } from "./helpers.ts";

const body = Buffer.from(encodeEnvelope(0, toBinary(SubscribeExitsRequestSchema, create(SubscribeExitsRequestSchema, { cpumask: "0-1" }))));

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

import { ServerResponse } from "node:http";
const stuck = new Set<ServerResponse>();
if (process.env.TRACE) {
  const orig = ServerResponse.prototype.write;
  ServerResponse.prototype.write = function (this: ServerResponse, ...a: unknown[]) {
    const ok = (orig as (...x: unknown[]) => boolean).apply(this, a);
    if (!ok) {
      stuck.add(this);
      this.once("drain", () => stuck.delete(this));
    }
    return ok;
  } as typeof orig;
}
let running: Running | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

describe.each([
  ["direct route (no Origin)", ""],
  ["app route (Origin)", "Origin: http://127.0.0.1\r\n"],
])("%s: 40 young streams reset at once", (_name, origin) => {
  it("every stream ends (registry and metrics)", async () => {
    running = await startServerListening(createSimSource({ cpus: 2, exitRate: 8000, seed: 3 }), {}, {}, {
      acceptsPerTurn: Number(process.env.APT ?? 1),
    });
    const streams = Array.from({ length: 40 }, () => open(running!.listening.port, origin));
    await eventually(() => streams.every((s) => s.got() > 1024), 15_000);
    expect(running.server.stats().streams).toBe(40);
    for (const s of streams) s.socket.resetAndDestroy();
    await eventually(() => running!.server.stats().streams === 0, 5000);
    // Each ended stream is counted once its response's message stream is closed; give them 8 s.
    let ended = 0; const t0 = Date.now();
    await eventually(async () => (ended = await endedSubscribes(running!.url)) === 40, 8000).catch(() => {});
    console.log("stuck in write (false, no drain):", stuck.size, [...stuck].map((r) => `${r.destroyed}/${r.writableLength}`).join(","));
    console.log("ended", ended, "after", Date.now() - t0, "ms"); expect(ended).toBe(40);
  }, 40_000);
});
