/**
 * Time and place on every event: each exit carries the wall-clock time the
 * server received the kernel's record (received_at), and GetInfo and each
 * stream's opening message say which host and boot the records come from.
 * Against the real kernel (a task that exits, between two clock readings)
 * and the sim (whose receive time is the exit's virtual time, as its
 * ac_btime is), over binary (pre-encoded) and JSON streams and a replay.
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { createTaskwireClient, type Exit, type HostIdentity, watchExits } from "@taskwire/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openNetlinkSource } from "../src/sources/netlink/netlink-source.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { collectExits, eventually, type Running, startServer } from "./helpers.ts";
import { netlinkMissing, runHelper } from "./native.ts";

const bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
const rawMachineId = (() => {
  try {
    return readFileSync("/etc/machine-id", "utf8").trim();
  } catch {
    return "";
  }
})();
const exitsIn = (evs: { event: { case: string | undefined; value?: unknown } }[]): Exit[] =>
  evs.flatMap((e) => (e.event.case === "exit" ? [e.event.value as Exit] : []));
/** The kernel's own view of the exit: start (whole seconds) plus elapsed time, ms. */
const kernelExitMs = (x: Exit) => Number(x.pidStats!.acBtime64) * 1000 + Number(x.pidStats!.acEtime) / 1000;

describe("host identity", () => {
  let running: Running;
  beforeAll(async () => {
    running = await startServer(createSimSource({ cpus: 4, exitRate: 0, seed: 5 }), {}, { hostName: "sim-host-a" });
  });
  afterAll(() => running.close());

  it("GetInfo names the host, the boot and the source", async () => {
    const { host } = await running.client.getInfo({});
    expect(host).toMatchObject({ hostname: "sim-host-a", source: "sim" });
    expect(host?.bootId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("a simulated kernel's boot is its own, new at each start: never this machine's, never another sim's", async () => {
    const sim = (await running.client.getInfo({})).host?.bootId;
    const other = await startServer(createSimSource({ cpus: 4, exitRate: 0, seed: 5 })); // the same seed
    try {
      const again = (await other.client.getInfo({})).host?.bootId;
      expect(again).toMatch(/^[0-9a-f-]{36}$/);
      expect(new Set([sim, again, bootId]).size).toBe(3);
    } finally {
      await other.close();
    }
  });

  it("the stream's opening message carries it, and watchExits hands it to onSubscribed", async () => {
    const ctl = new AbortController();
    const seen = new Promise<HostIdentity | undefined>((resolve) => {
      void (async () => {
        try {
          for await (
            const _ of watchExits(running.client, {
              cpumask: "0-3",
              signal: ctl.signal,
              onSubscribed: (s) => resolve(s.host),
            })
          );
        } catch { /* aborted */ }
      })();
    });
    const host = await seen;
    ctl.abort();
    expect(host).toMatchObject({ hostname: "sim-host-a", source: "sim" });
    // The same identity GetInfo gives, machine id included: taskwire's app-specific one, never the raw one.
    expect(host).toEqual((await running.client.getInfo({})).host);
    if (rawMachineId !== "") expect(host?.machineId).not.toBe(rawMachineId);
  });

  it("defaults to this machine's hostname", async () => {
    const other = await startServer(createSimSource({ cpus: 2, exitRate: 0, seed: 5 }));
    try {
      expect((await other.client.getInfo({})).host?.hostname).toBe(hostname());
    } finally {
      await other.close();
    }
  });
});

describe("received_at on the sim", () => {
  let running: Running;
  let source: SimSource;
  beforeAll(async () => {
    source = createSimSource({ cpus: 4, exitRate: 0, seed: 6 }) as SimSource;
    running = await startServer(source);
  });
  afterAll(() => running.close());

  it("is the exit's time, on binary and JSON streams alike, and on a replay", async () => {
    const json = createTaskwireClient(running.url, { useBinaryFormat: false });
    const bin = await collectExits(running.client, { cpumask: "0-3" });
    const txt = await collectExits(json, { cpumask: "0-3" });
    source.kernel.exitNow(50);
    await eventually(() => exitsIn(bin.events).length === 50 && exitsIn(txt.events).length === 50);
    const b = exitsIn(bin.events), t = exitsIn(txt.events);
    for (const [i, x] of b.entries()) {
      expect(x.receivedAt).toBeDefined();
      expect(x.receivedAt).toEqual(t[i]!.receivedAt);
      // The sim's exit time is its virtual time: within a second of the kernel-style btime + etime.
      expect(Math.abs(timestampMs(x.receivedAt!) - kernelExitMs(x))).toBeLessThan(1000);
    }
    await bin.stop();
    await txt.stop();
  });

  it("is kept in retention: a resumed stream replays the same times", async () => {
    const { listenerId } = await running.client.register({ cpumask: "0-3" });
    source.kernel.exitNow(10);
    const read = async (afterSeq: bigint) => {
      const got: Exit[] = [];
      for await (const msg of running.client.subscribeExits({ listenerId, afterSeq })) {
        got.push(...exitsIn(msg.events));
        if (got.length > 0 && msg.queued === 0) break;
      }
      return got;
    };
    const first = await read(0n);
    const replay = await read(1n);
    expect(first.length).toBe(10);
    expect(replay.map((x) => x.receivedAt)).toEqual(first.slice(1).map((x) => x.receivedAt));
    await running.client.deregister({ listenerId, cpumask: "0-3" });
  });
});

const missing = await netlinkMissing();
describe.skipIf(missing !== undefined)(`received_at on the real kernel${missing ? ` SKIPPED: ${missing}` : ""}`, () => {
  let running: Running;
  beforeAll(async () => {
    running = await startServer(await openNetlinkSource());
  });
  afterAll(() => running?.close());

  it("lies between the clock before the task was started and after its record arrived", async () => {
    const c = await collectExits(running.client, { cpumask: "0" });
    const before = Date.now();
    const { pid } = await runHelper(["exit", "tw-time", "0"], 0);
    await eventually(() => exitsIn(c.events).some((x) => x.pid === pid));
    const after = Date.now();
    await c.stop();
    const x = exitsIn(c.events).find((x) => x.pid === pid)!;
    const at = timestampMs(x.receivedAt!);
    expect(at).toBeGreaterThanOrEqual(before - 1); // the worker's clock has microseconds; Date.now() truncates
    expect(at).toBeLessThanOrEqual(after + 1);
    // The kernel's own view, btime (whole seconds) + etime, is at most a second (btime's truncation) earlier.
    expect(at - kernelExitMs(x)).toBeGreaterThan(-50);
    expect(at - kernelExitMs(x)).toBeLessThan(1100);
  });

  it("GetInfo says the source is the real kernel, on this boot", async () => {
    expect((await running.client.getInfo({})).host).toMatchObject({ hostname: hostname(), bootId, source: "netlink" });
  });
});
