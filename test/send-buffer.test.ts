/**
 * A client that stops reading is backpressured after a bounded amount: the
 * server caps each connection's kernel send buffer (SO_SNDBUF), so the
 * listener's queue (where overflow is counted and reported) takes over soon,
 * instead of after the kernel's autotuned megabytes.
 */
import http from "node:http";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { SubscribeExitsRequestSchema } from "../src/gen/taskwire/v1/taskstats_pb.ts";
import { type Listening, listenNode } from "../src/runtime/node.ts";
import { createServer } from "../src/server/server.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { eventually, sleep } from "./helpers.ts";

let listening: Listening | undefined;
afterEach(async () => {
  await listening?.close();
  listening = undefined;
});

/** Opens a stream with plain HTTP, reads its first bytes, then never reads again. */
function stalledStream(url: string): Promise<http.IncomingMessage> {
  const body = toBinary(SubscribeExitsRequestSchema, create(SubscribeExitsRequestSchema, { cpumask: "0-7" }));
  const envelope = Buffer.alloc(5 + body.length);
  envelope.writeUInt32BE(body.length, 1);
  envelope.set(body, 5);
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname,
      port: u.port,
      path: "/taskwire.v1.TaskStats/SubscribeExits",
      method: "POST",
      agent: false,
      headers: { "content-type": "application/connect+proto" },
    }, (res) => {
      res.once("data", () => {
        res.pause();
        resolve(res);
      });
    });
    req.once("error", reject);
    req.end(envelope);
  });
}

/** Events the stream handed to the transport before backpressure held it, with this send buffer. */
async function inFlight(sendBuffer: number): Promise<{ inFlight: number; overflowed: number }> {
  const source = createSimSource({ cpus: 8, exitRate: 0, seed: 4 }) as SimSource;
  const server = createServer({ source, limits: { defaultBuffer: 256 } });
  listening = await listenNode(server, { port: 0, sendBuffer });
  const res = await stalledStream(listening.url);
  const listener = () => server.listeners()[0]!;
  // ~20 MB of records, in steps so the stream can write between them.
  for (let i = 0; i < 400; i++) {
    source.kernel.exitNow(150);
    await sleep(1);
  }
  await eventually(() => listener().queueDepth === 256, 10_000);
  const result = { inFlight: listener().delivered, overflowed: listener().lost["subscriber-overflow"] };
  res.destroy();
  await listening.close();
  listening = undefined;
  return result;
}

describe.skipIf(process.platform !== "linux")("per-connection send buffer", () => {
  it("a stalled client holds a bounded amount in flight, far less than with the kernel's autotuning", async () => {
    const capped = await inFlight(128 * 1024);
    const autotuned = await inFlight(0);
    // ~300 bytes per event: a 128 KiB cap (256 KiB as the kernel counts it) plus the client's receive buffer.
    expect(capped.inFlight).toBeLessThan(4_000);
    expect(capped.overflowed).toBeGreaterThan(50_000);
    expect(autotuned.inFlight).toBeGreaterThan(2 * capped.inFlight);
  }, 60_000);
});
