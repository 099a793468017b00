/**
 * The netlink source against the real kernel (root, CAP_NET_ADMIN, TASKSTATS).
 * Where that is absent the suite skips naming what is missing; with
 * TASKWIRE_REQUIRE_NETLINK=1 (CI on these machines) absence is a failure.
 */
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync, spawn } from "node:child_process";
import { Code, ConnectError, type ExitEvent, LossReason, watchExits } from "@taskwire/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ExitRecord } from "../src/kernel/exit-record.ts";
import { type NetlinkSource, openNetlinkSource } from "../src/sources/netlink/netlink-source.ts";
import { collectExits, eventually, type Running, sleep, startServer } from "./helpers.ts";
import { helperPath, netlinkMissing, runHelper, spawnHelper } from "./native.ts";
import { sourceContract } from "./source-contract.ts";

const missing = await netlinkMissing();
const suite = missing === undefined ? describe : describe.skip;
const title = missing === undefined ? "netlink source (real kernel)" : `netlink source SKIPPED: ${missing}`;

const exitsOf = (evs: ExitEvent[]) =>
  evs.flatMap((e) => (e.event.case === "exit" ? [{ cpu: e.cpu, ...e.event.value }] : []));

if (missing === undefined) {
  sourceContract("netlink", {
    open: () => openNetlinkSource(),
    liveTask: async () => ({ pid: process.pid, tgid: process.pid }),
    causeExits: async (_s, cpus) => [(await runHelper(["exit", "tw-contract", "0"], cpus[0])).pid],
    deadPid: async () => (await runHelper(["exit", "tw-dead", "0"])).pid,
  });
}

suite(title, () => {
  let running: Running;
  let source: NetlinkSource;
  beforeAll(async () => {
    helperPath();
    source = await openNetlinkSource();
    running = await startServer(source);
  });
  afterAll(() => running?.close());

  it("GetInfo describes the real kernel", async () => {
    const info = await running.client.getInfo({});
    expect(info.source).toBe("netlink");
    expect(info.possibleCpus).toBe(readFileSync("/sys/devices/system/cpu/possible", "utf8").trim());
    expect(info.taskstatsVersion).toBeGreaterThanOrEqual(1);
    expect(info.taskstatsSize).toBeGreaterThanOrEqual(328);
    expect(info.kernelRelease).toBe(execFileSync("uname", ["-r"]).toString().trim());
  });

  it("GetPid(process.pid) agrees with /proc (comm, ppid, uid, CPU time within scheduler ticks)", async () => {
    const hz = Number(execFileSync("getconf", ["CLK_TCK"]).toString());
    const procTicks = () => {
      const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return {
        comm: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")),
        ppid: Number(f[1]),
        ticks: Number(f[11]) + Number(f[12]),
      };
    };
    const before = procTicks();
    const { stats } = await running.client.getPid({ pid: process.pid });
    const after = procTicks();
    expect(stats!.acPid).toBe(process.pid);
    expect(stats!.acComm).toBe(before.comm);
    expect(stats!.acPpid).toBe(before.ppid);
    expect(stats!.acUid).toBe(process.getuid!());
    // taskstats reports the raw tick-sampled utime+stime (task_cputime), and cpu_run_real_total is the same
    // sum in ns; /proc scales utime+stime with cputime_adjust() so that they add up to sum_exec_runtime, which
    // taskstats reports as cpu_run_virtual_total. Raw ticks and /proc agree only on an idle machine: while the
    // process shares its CPU (a loaded test host) tick sampling undercounts it by 20-30%, so each is compared
    // with the value the kernel derives from the same clock.
    const tick = 1e9 / hz; // ns
    const raw = Number(stats!.acUtime! + stats!.acStime!) * 1000; // us -> ns
    expect(Math.abs(raw - Number(stats!.cpuRunRealTotal!))).toBeLessThanOrEqual(tick); // two reads, at most a tick apart
    const ticks = Number(stats!.cpuRunVirtualTotal!) / tick;
    const slack = 4 + 0.02 * after.ticks;
    expect(ticks).toBeGreaterThanOrEqual(before.ticks - slack);
    expect(ticks).toBeLessThanOrEqual(after.ticks + slack);
  });

  it("maps ESRCH to NOT_FOUND", async () => {
    const dead = (await runHelper(["exit", "tw-gone", "0"])).pid;
    const err = await running.client.getPid({ pid: dead }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.NotFound);
  });

  it("a named child's exit arrives once, with its comm, exit code and pid, only to listeners of its CPU", async () => {
    const { client } = running;
    const cpus = source.possible.cpus;
    const target = cpus[cpus.length - 1]!, other = cpus[0]!;
    expect(target, "this test needs two possible CPUs").not.toBe(other);
    const streams = await Promise.all([target, other].map((cpu) => collectExits(client, { cpumask: String(cpu) })));
    const child = await runHelper(["exit", "tw-known", "7"], target);
    const sentinel = await runHelper(["exit", "tw-sentinel", "0"], other);
    await eventually(() =>
      exitsOf(streams[0]!.events).some((e) => e.pid === child.pid) &&
      exitsOf(streams[1]!.events).some((e) => e.pid === sentinel.pid)
    );
    await sleep(100);
    await Promise.all(streams.map((s) => s.stop()));
    const mine = exitsOf(streams[0]!.events).filter((e) => e.pid === child.pid);
    expect(mine).toHaveLength(1);
    expect(mine[0]!.cpu).toBe(target);
    expect(mine[0]!.pidStats!.acComm).toBe("tw-known");
    expect(mine[0]!.pidStats!.acExitcode).toBe(7 << 8); // wait(2) status
    expect(mine[0]!.pidStats!.acPid).toBe(child.pid);
    expect(exitsOf(streams[1]!.events).some((e) => e.pid === child.pid)).toBe(false);
    expect(exitsOf(streams[1]!.events).every((e) => e.cpu === other)).toBe(true);
  });

  it("a multithreaded child: GetTgid sums its threads; each thread exits once and the group aggregate comes last", async () => {
    const { client } = running;
    const cpu = source.possible.cpus[0]!;
    const sub = await collectExits(client, { cpumask: String(cpu) });
    const { events } = sub;
    const child = spawnHelper(["threads", "tw-mt", "3"], cpu);
    const line = await new Promise<string>((r) => child.stdout.once("data", (d: Buffer) => r(d.toString())));
    const tids = line.trim().split(" ").slice(1).map(Number);
    expect(tids).toHaveLength(3);
    const all = [child.pid!, ...tids];
    const threads = await Promise.all(all.map(async (pid) => (await client.getPid({ pid })).stats!));
    const group = (await client.getTgid({ tgid: child.pid! })).stats!;
    const sum = (f: "cpuRunRealTotal" | "cpuCount" | "nvcsw" | "nivcsw") => threads.reduce((a, s) => a + s[f]!, 0n);
    for (const f of ["cpuRunRealTotal", "cpuCount", "nvcsw", "nivcsw"] as const) expect(group[f], f).toBe(sum(f));
    expect(threads.every((s) => s.acTgid === child.pid)).toBe(true);
    child.stdin.end();
    await new Promise((r) => child.once("close", r));
    await eventually(() => exitsOf(events).some((e) => e.pid === child.pid));
    await sub.stop();
    const mine = exitsOf(events).filter((e) => e.tgid === child.pid);
    expect(mine.map((e) => e.pid).sort()).toEqual([...all].sort());
    expect(mine.filter((e) => e.tgidStats !== undefined).map((e) => e.pid)).toEqual([child.pid]);
    const last = mine.find((e) => e.tgidStats !== undefined)!;
    expect(mine[mine.length - 1]).toBe(last);
    expect(last.pidStats!.acFlag! & 0x20).toBe(0x20);
    // The group's total is the threads' records, but for a tick each: taskstats_exit adds an exiting thread to its
    // group's total (fill_tgid_exit) before it fills the thread's own record (prepare_reply may sleep between), and a
    // tick landing between counts in the thread's record alone. Seen once in a CI run: 8 ms against 12 ms (HZ=250).
    const threadsRun = mine.reduce((a, e) => a + e.pidStats!.cpuRunRealTotal!, 0n);
    const total = last.tgidStats!.cpuRunRealTotal!;
    expect(total).toBeLessThanOrEqual(threadsRun);
    expect(threadsRun - total).toBeLessThanOrEqual(BigInt(mine.length) * 10_000_000n); // a tick each, HZ >= 100
  });

  it("a storm of 50,000 thread exits: every thread id arrives over loopback and the kernel drops none", async () => {
    const { client } = running;
    const pids = new Map<number, number>(); // tid -> times seen: 50,000 tids wrap around pid_max
    const ctl = new AbortController();
    let subscribed!: () => void;
    const ready = new Promise<void>((r) => (subscribed = r));
    let lost = 0n;
    const done = (async () => {
      try {
        for await (
          const ev of watchExits(client, {
            cpumask: source.possible.list,
            buffer: 200_000,
            signal: ctl.signal,
            onSubscribed: () => subscribed(),
          })
        ) {
          if (ev.event.case === "exit") pids.set(ev.event.value.pid, (pids.get(ev.event.value.pid) ?? 0) + 1);
          else if (ev.event.case === "lost") lost += ev.event.value.count;
        }
      } catch { /* aborted */ }
    })();
    await ready;
    const storm = await runHelper(["storm", "50000", "4"]);
    const tids = storm.stdout.trim().split("\n").map(Number);
    expect(tids).toHaveLength(50_000);
    const want = new Map<number, number>();
    for (const t of tids) want.set(t, (want.get(t) ?? 0) + 1);
    await eventually(() => [...want].every(([t, n]) => (pids.get(t) ?? 0) >= n), 60_000);
    ctl.abort();
    await done;
    expect(lost).toBe(0n);
    const info = await client.getInfo({});
    expect(info.kernelDrops).toBe(0n);
    expect(info.kernelOverruns).toBe(0n);
  }, 120_000);

  it("the same storm against a tiny receive buffer: Lost counts equal the records missing, exactly", async () => {
    const tiny = await openNetlinkSource({ socketBuffer: 4096 });
    const small = await startServer(tiny, { maxBuffer: 1 << 20 });
    const reference = await openNetlinkSource({ socketBuffer: 256 << 20 });
    const seen: ExitRecord[] = [];
    reference.start({
      exit: (r) => seen.push(r),
      kernelLoss: () => {
        throw new Error("the reference listener lost records");
      },
      sourceLoss: () => {
        throw new Error("the reference listener could not pass records on");
      },
    });
    try {
      const cpus = tiny.possible.cpus;
      reference.watch(cpus, true);
      await reference.synced();
      const sub = await collectExits(small.client, { cpumask: tiny.possible.list, buffer: 500_000 });
      const { events } = sub;
      const starts = new Map<number, number>(), ends = new Map<number, number>();
      const arrived = (pid: number | undefined, comm: string) =>
        exitsOf(events).some((e) => e.pid === pid && e.pidStats?.acComm === comm);
      for (const cpu of cpus) starts.set(cpu, (await runHelper(["exit", "tw-start", "0"], cpu)).pid);
      // The start markers must be read before the storm floods the tiny socket (waited for, not a fixed sleep).
      await eventually(() => cpus.every((c) => arrived(starts.get(c), "tw-start")), 30_000);
      await runHelper(["storm", "50000", "4"]);
      // An end marker is lost too if the tiny socket has not drained the storm yet (a loaded machine reads late):
      // make another until one arrives. The reference sees every one, so both windows still end on the same record.
      for (const cpu of cpus) {
        for (let attempt = 1;; attempt++) {
          ends.set(cpu, (await runHelper(["exit", "tw-end", "0"], cpu)).pid);
          const got = await eventually(() => arrived(ends.get(cpu), "tw-end"), 2000).then(() => true, () => false);
          if (got) break;
          expect(attempt, `CPU ${cpu}'s end marker never got through the tiny socket`).toBeLessThan(30);
        }
      }
      await eventually(() => cpus.every((c) => arrived(ends.get(c), "tw-end")), 60_000);
      await eventually(
        () => cpus.every((c) => seen.some((r) => r.pid === ends.get(c) && r.pidStats.acComm === "tw-end")),
        10_000,
      );
      await sub.stop();
      expect(reference.info().overruns, "the reference listener must see everything").toBe(0);
      let totalLost = 0n;
      for (const cpu of cpus) {
        // The reference's records strictly between this CPU's start and end markers...
        const ref = seen.filter((r) => r.cpu === cpu);
        const isMarker = (pid: number, comm: string | undefined, which: Map<number, number>, name: string) =>
          pid === which.get(cpu) && comm === name;
        const refStart = ref.findIndex((r) => isMarker(r.pid, r.pidStats.acComm, starts, "tw-start"));
        const refEnd = ref.findIndex((r) => isMarker(r.pid, r.pidStats.acComm, ends, "tw-end"));
        expect(refStart >= 0 && refEnd > refStart, `the reference saw CPU ${cpu}'s markers in order`).toBe(true);
        const refWindow = ref.slice(refStart + 1, refEnd);
        // ...against what the tiny listener's stream carried for the CPU between the same markers.
        const mine = events.filter((e) => e.cpu === cpu || (e.event.case === "lost" && e.cpu === cpu));
        const s = mine.findIndex((e) =>
          e.event.case === "exit" && isMarker(e.event.value.pid, e.event.value.pidStats?.acComm, starts, "tw-start")
        );
        const t = mine.findIndex((e) =>
          e.event.case === "exit" && isMarker(e.event.value.pid, e.event.value.pidStats?.acComm, ends, "tw-end")
        );
        expect(s >= 0 && t > s, `CPU ${cpu}'s markers arrived in order`).toBe(true);
        const window = mine.slice(s + 1, t);
        const received = exitsOf(window);
        const lost = window.reduce((a, e) => a + (e.event.case === "lost" ? e.event.value.count : 0n), 0n);
        expect(
          window.filter((e) => e.event.case === "lost").every((e) =>
            e.event.case === "lost" && e.event.value.reason === LossReason.KERNEL_OVERFLOW
          ),
        ).toBe(true);
        expect(BigInt(received.length) + lost, `CPU ${cpu}: received + lost = produced`).toBe(BigInt(refWindow.length));
        const refPids = refWindow.map((r) => r.pid);
        expect(received.every((e) => refPids.includes(e.pid))).toBe(true);
        totalLost += lost;
      }
      expect(totalLost, "the tiny buffer must have overflowed").toBeGreaterThan(0n);
      expect(BigInt(tiny.info().kernelDrops)).toBeGreaterThanOrEqual(totalLost); // drops outside the windows count too
      expect((await small.client.getInfo({})).kernelOverruns).toBeGreaterThan(0n);
    } finally {
      await small.close();
      await reference.close();
    }
  }, 180_000);

  // The reader holds records for up to a window and, while they keep coming, sleeps a window between reads instead
  // of polling (one wakeup a window). A record must still reach the main thread within about a window of its exit:
  // one that starts a burst, one amid it, and the last one after it (nothing left waiting for a next record). Its
  // receive time is stamped as it is read, and the reader reads at least every 5 ms, however wide the window.
  it(
    "a trickle of exits: each record is handed over within about a batch window of its exit, stamped within ms",
    async () => {
      const WINDOW = 100; // the most the source takes
      const trickle = await openNetlinkSource({ batchWindowMs: WINDOW });
      const arrived = new Map<number, number>(), stamped = new Map<number, number>();
      const wall = () => performance.timeOrigin + performance.now();
      try {
        trickle.start({
          exit: (r) => void (arrived.has(r.pid) || (arrived.set(r.pid, wall()), stamped.set(r.pid, r.receivedAtMs))),
          kernelLoss() {},
          sourceLoss() {},
        });
        trickle.watch(trickle.possible.cpus, true);
        await trickle.synced();
        const exited = new Map<number, number>();
        for (let i = 0; i < 12; i++) {
          const child = spawnHelper(["exit", "tw-trickle", "0"]);
          await new Promise<void>((r) => child.once("exit", () => r(void exited.set(child.pid!, wall()))));
          await sleep(i === 10 ? 3 * WINDOW : 30); // a pause before the last: it comes alone, after the flow stopped
        }
        await eventually(() => [...exited.keys()].every((pid) => arrived.has(pid)), 5000);
        const delays = [...exited].map(([pid, t]) => Math.round(arrived.get(pid)! - t));
        // The exit event reaches this process after the kernel sent the record, so a delay is at most the window, plus
        // scheduling (a few ms here); a sleep that did not count as holding made it up to two windows (W + 84 ms seen).
        expect(Math.max(...delays), `delays after the exit event, ms: ${delays.join(", ")}`).toBeLessThan(1.5 * WINDOW);
        // Stamped as read: before this process saw the exit, or a few ms after (a window late, 100, if the reader
        // slept whole windows without reading).
        const late = [...exited].map(([pid, t]) => Math.round(stamped.get(pid)! - t));
        expect(Math.max(...late), `receive times after the exit event, ms: ${late.join(", ")}`).toBeLessThan(
          WINDOW / 2,
        );
      } finally {
        await trickle.close();
      }
    },
    30_000,
  );

  // Each hand-off wakes the main thread and sends a message on every stream (~1 ms of CPU on a paravirtualized host),
  // so once they batch they are at least 10 ms apart: at 1,000 exits a second and the default 2 ms window, ~100
  // hand-offs a second rather than ~400. Records of one hand-off reach the sink back to back; a gap starts the next.
  it("a steady flow at the default window is handed over at most about every 10 ms, every record", async () => {
    const steady = await openNetlinkSource();
    let pacer = -1, batches = 0, last = -Infinity;
    const arrived = new Set<number>();
    try {
      steady.start({
        exit: (r) => {
          if (r.tgid !== pacer) return;
          const now = performance.now();
          if (now - last > 1) batches++;
          last = now;
          arrived.add(r.pid);
        },
        kernelLoss() {},
        sourceLoss() {},
      });
      steady.watch(steady.possible.cpus, true);
      await steady.synced();
      const child = spawnHelper(["pace", "1000", "1000"]);
      pacer = child.pid!;
      let out = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      await new Promise((r) => child.once("close", r));
      const tids = out.trim().split("\n").map(Number);
      await eventually(() => tids.every((t) => arrived.has(t)), 5000);
      // With the spacing off (hand-offs 2 ms apart) these 1,000 records took 414 and 420 hand-offs; spaced, ~100.
      expect(batches, `${batches} hand-offs for ${tids.length} records`).toBeLessThan(200);
    } finally {
      await steady.close();
    }
  }, 30_000);

  // Between a nap's start and its end the kernel queues records the reader has not read. Unwatching a CPU then
  // (the last listener leaves, or the server stops) must still hand over what was queued before it: the
  // deregistration's request/ACK exchange reads that socket and would pass over them.
  it("unwatching mid-flow hands over every record queued before it", async () => {
    const flow = await openNetlinkSource({ batchWindowMs: 100 }); // naps of 5 ms while records flow
    const arrived = new Set<number>();
    const exited: number[] = [];
    try {
      flow.start({ exit: (r) => void arrived.add(r.pid), kernelLoss() {}, sourceLoss() {} });
      for (let round = 0; round < 4; round++) {
        flow.watch(flow.possible.cpus, true);
        await flow.synced();
        for (let i = 0; i < 15; i++) {
          const child = spawnHelper(["exit", "tw-flow", "0"]);
          await new Promise<void>((r) => child.once("exit", () => r(void exited.push(child.pid!))));
        }
        flow.watch(flow.possible.cpus, false); // right after the last exit: its record is likely still queued
        await flow.synced();
      }
      await sleep(50);
      expect(exited.filter((pid) => !arrived.has(pid)), "exited before an unwatch, never handed over").toEqual([]);
    } finally {
      await flow.close();
    }
  }, 30_000);

  // The reader reads into a pool of 64 slabs of 1 MiB (~100,000 thread exits) and stops reading while the main
  // thread holds every one: records then wait in the kernel's buffer and, past it, are dropped and counted. A main
  // thread stalled through a storm must cost records only as counted loss, and the reader must resume once it frees
  // a slab.
  it(
    "a storm while the main thread is stalled: the reader runs out of slabs, waits, and every record is counted",
    async () => {
      const stalled = await openNetlinkSource({ socketBuffer: 1 << 20 }); // a few hundred records a CPU past the slabs
      const STORM = 160_000;
      let stormPid = -1, stalledOnce = false, arrived = 0, lost = 0, discarded = 0;
      const markers = new Set<number>();
      // The storm helper is a zombie once it is done: this thread cannot reap it while it is stalled.
      const stormOver = () => readFileSync(`/proc/${stormPid}/stat`, "utf8").split(") ")[1]?.startsWith("Z") ?? true;
      try {
        stalled.start({
          exit: (r) => {
            if (r.pidStats.acComm === "tw-after") markers.add(r.pid);
            if (r.tgid !== stormPid) return;
            arrived++;
            if (stalledOnce) return;
            stalledOnce = true; // the first storm record stalls this thread until the storm is over (30 s at most)
            const nap = new Int32Array(new SharedArrayBuffer(4));
            for (let t = 0; t < 600 && !stormOver(); t++) Atomics.wait(nap, 0, 0, 50);
          },
          kernelLoss: (_cpu, count) => void (lost += count),
          sourceLoss: (_cpu, count) => void (discarded += count),
        });
        stalled.watch(stalled.possible.cpus, true);
        await stalled.synced();
        // Its thread ids are not read: a pipe would fill while this thread is stalled, and stall the storm.
        const storm = spawn(helperPath(), ["storm", String(STORM), "4"], { stdio: "ignore" });
        stormPid = storm.pid!;
        await new Promise((r) => storm.once("close", r));
        const after = await runHelper(["exit", "tw-after", "0"]);
        await eventually(() => markers.has(after.pid), 30_000); // the reader came back to read after the stall
        expect(stalledOnce, "the main thread stalled").toBe(true);
        expect(lost, "records were dropped past the slabs and the kernel's buffer, and counted").toBeGreaterThan(0);
        expect(discarded, "records read but not passed on").toBe(0);
        // Counted loss may include other processes' exits; the storm's records are all here or counted.
        expect(arrived + lost, `${arrived} arrived, ${lost} lost`).toBeGreaterThanOrEqual(STORM);
      } finally {
        await stalled.close();
      }
    },
    90_000,
  );

  // The main thread walks a slab of records in a message handler: a record it cannot pass on (a sink that throws, a
  // datagram that does not decode) must cost that record alone, counted as loss on its CPU, not the rest of the slab
  // uncounted, nor the process (an exception there is uncaught).
  it(
    "a sink that throws on some records: each is counted lost on its CPU as a source error, every other record arrives",
    async () => {
      const s = await openNetlinkSource();
      const STORM = 20_000, EVERY = 997; // a prime: the throws land at different offsets of the slabs
      const RECORDS = STORM + 1; // the storm's threads, then its main thread
      let stormPid = -1, seen = 0, arrived = 0, threw = 0;
      const lostOn = new Map<number, number>(), threwOn = new Map<number, number>();
      let kernelLost = 0;
      try {
        s.start({
          exit: (r) => {
            if (r.tgid !== stormPid) return;
            if (++seen % EVERY === 0) {
              threw++;
              threwOn.set(r.cpu, (threwOn.get(r.cpu) ?? 0) + 1);
              throw new Error(`the sink failed on record ${seen}`);
            }
            arrived++;
          },
          kernelLoss: (_cpu, count) => void (kernelLost += count),
          sourceLoss: (cpu, count) => void lostOn.set(cpu, (lostOn.get(cpu) ?? 0) + count),
        });
        s.watch(s.possible.cpus, true);
        await s.synced();
        const storm = spawn(helperPath(), ["storm", String(STORM), "4"], { stdio: "ignore" });
        stormPid = storm.pid!;
        await new Promise((r) => storm.once("close", r));
        await eventually(() => arrived + threw >= RECORDS, 20_000);
        expect(threw, "records the sink threw on").toBe(Math.floor(RECORDS / EVERY));
        expect(arrived, "every record the sink did not throw on").toBe(RECORDS - threw);
        // Loss is counted per CPU, as the source's own (not the kernel's, which dropped none with 32 MiB buffers).
        expect(Object.fromEntries(lostOn), "records counted lost, by CPU").toEqual(Object.fromEntries(threwOn));
        expect(kernelLost, "records counted as the kernel's drops").toBe(0);
        expect(s.info(), "GetInfo's counts").toMatchObject({ discarded: threw, kernelDrops: 0 });
      } finally {
        await s.close();
      }
    },
    60_000,
  );

  // With a sink that cannot take the loss either, nothing can count the record: the reader fails for good, and says
  // why, rather than lose records uncounted or throw from the worker's message handler.
  it("a sink whose sourceLoss throws too fails the reader, with the reason, and nothing is thrown", async () => {
    const s = await openNetlinkSource();
    try {
      s.start({
        exit: () => {
          throw new Error("exit failed");
        },
        kernelLoss() {},
        sourceLoss: () => {
          throw new Error("sourceLoss failed");
        },
      });
      s.watch(s.possible.cpus, true);
      await s.synced();
      await runHelper(["exit", "tw-refused", "0"]);
      let failure: unknown;
      await eventually(async () => {
        s.watch([0], true);
        failure = await s.synced().then(() => undefined, (err: unknown) => err);
        return failure !== undefined;
      }, 10_000);
      expect(String(failure)).toMatch(
        /netlink reader failed: the sink refused a loss of 1 on CPU \d+: sourceLoss failed/,
      );
      // The failure stops the worker too: it had gone on polling, and close() (Node's terminate() joins the thread)
      // waited for the poll's timeout, 4.3 s of its 5 s backstop.
      const t0 = performance.now();
      await s.close();
      expect(performance.now() - t0, "close() after the failure, ms").toBeLessThan(2000);
    } finally {
      await s.close();
    }
  });

  // synced() counts acks, so every change must be acked, a repeated one too; after close() nothing reads the port and
  // the doorbell's fd number may belong to another file: a change then is refused, and nothing is written.
  it("a repeated watch change is acked; after close() one is refused and rings no reused fd", async () => {
    const s = await openNetlinkSource();
    const dir = mkdtempSync(join(tmpdir(), "tw-fd-"));
    const files: number[] = [];
    try {
      s.start({ exit() {}, kernelLoss() {}, sourceLoss() {} });
      for (const on of [true, true, false, false, true]) {
        s.watch([0], on);
        await Promise.race([s.synced(), sleep(5000).then(() => Promise.reject(new Error(`watch ${on}: never acked`)))]);
      }
      await s.close();
      for (let i = 0; i < 8; i++) files.push(openSync(join(dir, `f${i}`), "w+")); // the lowest free numbers
      s.watch([1 % s.possible.cpus.length], true);
      await expect(s.synced()).rejects.toThrow(/closed/);
      expect(files.map((fd) => fstatSync(fd).size), "bytes written into files opened after close").toEqual(
        files.map(() => 0),
      );
    } finally {
      for (const fd of files) closeSync(fd);
      rmSync(dir, { recursive: true });
      await s.close();
    }
  });

  // On a quiet host the reader sleeps in poll() on its sockets, which no control message from the main thread
  // ends by itself: the main thread rings the reader's doorbell (an eventfd in the same poll) after each one. Without
  // it a watch, unwatch or stop waits for the poll's timeout (100 ms): a median near 50 ms over these rounds.
  it("a watch change on a quiet host takes effect at once (the doorbell ends the reader's poll)", async () => {
    const quiet = await openNetlinkSource();
    const cpus = quiet.possible.cpus, last = cpus[cpus.length - 1]!;
    const took: number[] = [];
    try {
      quiet.start({ exit() {}, kernelLoss() {}, sourceLoss() {} });
      quiet.watch(cpus, true);
      await quiet.synced();
      for (let round = 0; round < 9; round++) {
        await sleep(130 + 17 * round); // the reader is asleep in poll(), at a different point of its timeout each round
        const t0 = performance.now();
        quiet.watch([last], round % 2 === 1); // off, on, off, ...: with one CPU, an unwatch leaves the poll set empty
        await quiet.synced();
        took.push(performance.now() - t0);
      }
      took.sort((a, b) => a - b);
      expect(took[4]!, `median of ${took.map((t) => t.toFixed(1)).join(", ")} ms`).toBeLessThan(20);
    } finally {
      await quiet.close();
    }
  }, 30_000);
});
