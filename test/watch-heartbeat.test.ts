/**
 * watchExits judges a stream dead after three heartbeat intervals of silence.
 * Without `heartbeatMs` the server's default interval applies, which an
 * operator may set anywhere from 100 ms to 10 minutes (`--heartbeat-ms`):
 * the watch must go by the interval the stream's opening message names, not
 * assume 15 s and reconnect every 46 s from a quiet server with a longer one.
 */
import { type Reconnecting, watchExits } from "@taskwire/client";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { type Running, startServer } from "./helpers.ts";

let running: Running | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await running?.close();
  running = undefined;
});

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
});
