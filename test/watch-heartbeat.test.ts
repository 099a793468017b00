/**
 * watchExits judges a stream dead after three heartbeat intervals of silence.
 * Without `heartbeatMs` the server's default interval applies, which an
 * operator may set anywhere from 100 ms to 10 minutes (`--heartbeat-ms`):
 * the watch must go by the interval the stream's opening message names, not
 * assume 15 s and reconnect every 46 s from a quiet server with a longer one.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { createTaskwireClient, type Reconnecting, watchExits } from "@taskwire/client";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { SubscribeExitsResponseSchema } from "../src/gen/taskwire/v1/taskstats_pb.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { type Running, startServer } from "./helpers.ts";

let running: Running | undefined;
let other: Server | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await running?.close();
  running = undefined;
  other?.closeAllConnections();
  await new Promise((r) => other === undefined ? r(undefined) : other.close(r));
  other = undefined;
});

// The quiet watch of the test above, against `url`: the reconnects it makes while the fake clock runs 60 s.
async function quietMinute(url: string): Promise<Reconnecting[]> {
  const reconnects: Reconnecting[] = [];
  let subscribed = 0;
  const ctl = new AbortController();
  const loop = (async () => {
    // An existing listener's id: the watch subscribes at once (a cpumask would Register first).
    const options = { listenerId: "l-1", signal: ctl.signal, onSubscribed: () => subscribed++ };
    for await (
      const _ of watchExits(createTaskwireClient(url), {
        ...options,
        onReconnect: (r) => reconnects.push(r),
      })
    ) {
      /* no exits */
    }
  })();
  for (let i = 0; i < 500 && subscribed === 0; i++) await new Promise((r) => setImmediate(r));
  expect(subscribed).toBe(1);
  for (let s = 0; s < 60; s++) await vi.advanceTimersByTimeAsync(1000);
  ctl.abort();
  vi.useRealTimers();
  await loop.catch(() => {});
  return reconnects;
}

describe("watchExits's idle watchdog", () => {
  it("waits out the server's own heartbeat interval on a quiet stream", async () => {
    running = await startServer(createSimSource({ cpus: 2, exitRate: 0, seed: 1 }), { heartbeatMs: 120_000 });
    // Timers and the clock the watchdog reads are faked from here on, for the server's heartbeats too.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const reconnects: Reconnecting[] = [];
    let subscribed = 0;
    const ctl = new AbortController();
    const loop = (async () => {
      for await (
        const _ of watchExits(running.client, {
          cpumask: "all",
          signal: ctl.signal,
          onSubscribed: () => subscribed++,
          onReconnect: (r) => reconnects.push(r),
        })
      ) { /* no exits: rate 0 */ }
    })();
    // The stream opens (real I/O; the fake clock does not move meanwhile).
    for (let i = 0; i < 500 && subscribed === 0; i++) await new Promise((r) => setImmediate(r));
    expect(subscribed).toBe(1);
    // Past 3 x 15 s and the watchdog's check, well before the server's first heartbeat (120 s).
    for (let s = 0; s < 60; s++) await vi.advanceTimersByTimeAsync(1000);
    expect(reconnects.map((r) => r.error.message)).toEqual([]);
    expect(subscribed).toBe(1);
    ctl.abort();
    vi.useRealTimers();
    await loop;
  });

  it("bounds an interval past any taskwire server's (a uint32's most): three of it would overflow its timer", async () => {
    // Not a taskwire server (one refuses --heartbeat-ms past 10 minutes): an opening message naming 2^32-1 ms, then
    // nothing, the stream held open.
    const opening = toBinary(
      SubscribeExitsResponseSchema,
      create(SubscribeExitsResponseSchema, { listenerId: "l-1", heartbeatMs: 2 ** 32 - 1 }),
    );
    const frame = new Uint8Array(5 + opening.length);
    new DataView(frame.buffer).setUint32(1, opening.length);
    frame.set(opening, 5);
    other = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { "content-type": "application/connect+proto" });
      res.write(frame);
    });
    await new Promise<void>((r) => other!.listen(0, "127.0.0.1", r));
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const reconnects = await quietMinute(`http://127.0.0.1:${(other.address() as AddressInfo).port}`);
    expect(reconnects.map((r) => r.error.message)).toEqual([]);
  });
});
