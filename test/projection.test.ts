/** Server-side filters and field masks on SubscribeExits, through the SDK. */
import { Code, ConnectError } from "@taskwire/client";
import { afterEach, describe, expect, it } from "vitest";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { type Running, startServer } from "./helpers.ts";

let running: Running | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

async function start() {
  const source = createSimSource({ cpus: 4, exitRate: 0, seed: 21 }) as SimSource;
  running = await startServer(source);
  return { client: running.client, source };
}

type Req = Parameters<Running["client"]["subscribeExits"]>[0];

/** Subscribes, makes `exits` exits, and returns the exit events the stream carried. */
async function eventsFor(req: Req, exits = 3000) {
  const { client, source } = await start();
  const events = [];
  const ctl = new AbortController();
  let produced = false;
  try {
    for await (const m of client.subscribeExits({ cpumask: "0-3", heartbeatMs: 200, ...req }, { signal: ctl.signal })) {
      if (!produced) {
        produced = true;
        source.kernel.exitNow(exits);
        // Removing the listener ends its stream once everything queued is sent. (Stopping at the first heartbeat
        // raced: a loop stalled 200 ms before the client read the opening message let a heartbeat in first.)
        await client.deregister({ listenerId: m.listenerId, cpumask: "all" });
        continue;
      }
      events.push(...m.events); // a heartbeat carries none
    }
  } catch (err) {
    // ...with LISTENER_NOT_FOUND: a stream never ends silently while its client reads.
    if (!(err instanceof ConnectError && err.code === Code.NotFound)) throw err;
  } finally {
    ctl.abort();
  }
  return { events, all: source.info().records };
}

describe("filters", () => {
  it("comm prefix: only matching exits, numbered without gaps (filtered records are not loss)", async () => {
    const { events, all } = await eventsFor({ filter: { commPrefix: "ba" } });
    const exits = events.flatMap((e) => (e.event.case === "exit" ? [e] : []));
    expect(exits.length).toBeGreaterThan(10);
    expect(exits.length).toBeLessThan(all);
    expect(exits.every((e) => e.event.case === "exit" && e.event.value.pidStats!.acComm!.startsWith("ba"))).toBe(true);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => BigInt(i + 1)));
    expect(events.some((e) => e.event.case === "lost")).toBe(false);
  });

  it("nonzero exit codes and uid sets combine with AND", async () => {
    const { events } = await eventsFor({ filter: { nonzeroExit: true, uids: [0, 1000] } });
    const stats = events.flatMap((e) => (e.event.case === "exit" ? [e.event.value.pidStats!] : []));
    expect(stats.length).toBeGreaterThan(5);
    expect(stats.every((s) => s.acExitcode !== 0 && (s.acUid === 0 || s.acUid === 1000))).toBe(true);
  });

  it("tgid sets select one process's threads", async () => {
    const first = await eventsFor({}, 2000);
    const tgid = first.events.flatMap((e) => (e.event.case === "exit" ? [e.event.value.tgid] : []))
      .find((t, _, all) => all.filter((x) => x === t).length >= 2)!;
    await running!.close();
    running = undefined;
    const { events } = await eventsFor({ filter: { tgids: [tgid] } }, 2000); // same seed, same tasks
    expect(events.length).toBeGreaterThanOrEqual(2);
    expect(events.every((e) => e.event.case === "exit" && e.event.value.tgid === tgid)).toBe(true);
  });
});

describe("field masks", () => {
  it("send only the named TaskStats fields, in pid and tgid records", async () => {
    const { events } = await eventsFor({ fields: ["ac_comm", "ac_exitcode", "cpu_delay_total"] }, 1500);
    const exits = events.flatMap((e) => (e.event.case === "exit" ? [e.event.value] : []));
    expect(exits.length).toBeGreaterThan(100);
    const keys = (s: object) =>
      Object.keys(s).filter((k) => !k.startsWith("$") && (s as Record<string, unknown>)[k] !== undefined).sort();
    for (const x of exits) {
      expect(keys(x.pidStats!)).toEqual(["acComm", "acExitcode", "cpuDelayTotal"]);
      // A tgid record is the kernel's zeroed struct with its summed fields: of the mask, comm blank and exit code 0.
      if (x.tgidStats) {
        expect(keys(x.tgidStats)).toEqual(["acComm", "acExitcode", "cpuDelayTotal"]);
        expect(x.tgidStats).toMatchObject({ acComm: "", acExitcode: 0 });
      }
    }
    expect(exits.some((x) => x.tgidStats !== undefined)).toBe(true);
  });

  it("refuses unknown field names with INVALID_ARGUMENT naming them", async () => {
    const { client } = await start();
    const err = await (async () => {
      for await (const _ of client.subscribeExits({ cpumask: "0", fields: ["ac_comm", "utime"] })) { /* drain */ }
    })().then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toContain('"utime"');
  });
});
