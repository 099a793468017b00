import { describe, expect, it } from "vitest";
import { CLOCK_BASE_US, nowUs } from "../bench/_clock.ts";
import { indexTrace, savedValue, splitPath, type TracedWindow } from "../bench/_sched-trace.ts";

// tracefs's text for sched_switch and sched_waking with record-tgid on; times in µs after 1000 s.
const at = (us: number) => (1000 + us / 1e6).toFixed(6);
const task = (tid: number, tgid: number | undefined) =>
  tid === 0 ? "          <idle>-0       (-------)" : `            node-${tid}     (${String(tgid).padStart(7)})`;
const switched = (cpu: number, us: number, from: [number, number?], to: number) =>
  `${task(from[0], from[1])} [00${cpu}] d..2. ${at(us)}: sched_switch: prev_comm=${
    from[0] === 0 ? `swapper/${cpu}` : "node"
  } prev_pid=${from[0]} prev_prio=89 prev_state=S ==> next_comm=${
    to === 0 ? `swapper/${cpu}` : "node"
  } next_pid=${to} next_prio=89`;
const woke = (cpu: number, us: number, by: [number, number], pid: number) =>
  `${task(by[0], by[1])} [00${cpu}] d.s7. ${at(us)}: sched_waking: comm=node pid=${pid} prio=89 target_cpu=001`;

// Server 100 (helper 101), client 200. Event A: written at 130, the client on a CPU at 150, read at 300. Event B:
// written at 1040; the server's main thread and its helper hold both CPUs until 1400, CPU 1 is idle until 1450, when
// the client runs; read at 1600. Event C: read at 1620, its data there while the client was awake.
const TRACE = [
  "# tracer: nop",
  "#           TASK-PID       TGID    CPU#  |||||  TIMESTAMP  FUNCTION",
  switched(0, 0, [0], 100),
  woke(0, 130, [100, 100], 200),
  switched(1, 150, [0], 200),
  switched(1, 310, [200, 200], 0),
  switched(1, 1000, [0], 101),
  woke(0, 1040, [100, 100], 200),
  `${task(100, 100)} [000] ...1. ${at(1200)}: tracing_mark_write: not a sched event`,
  switched(1, 1400, [101, 100], 0),
  switched(1, 1450, [0], 200),
  switched(0, 1500, [100, 100], 0),
  switched(1, 1700, [200, 200], 0),
].join("\n");

const us = (t: number) => 1000 * 1e6 + t + CLOCK_BASE_US;

describe("the latency bench's sched trace", () => {
  it("indexes runs per CPU, threads' processes, wake-ups and switch-ins, and skips other lines", () => {
    const index = indexTrace(TRACE);
    expect(index.runs[1]!.map(([s, e, tid]) => [s - 1e9, e - 1e9, tid])).toEqual([
      [-Infinity, 150, 0], // idle from before the trace
      [150, 310, 200],
      [310, 1000, 0],
      [1000, 1400, 101],
      [1400, 1450, 0],
      [1450, 1700, 200],
      [1700, Infinity, 0], // idle to its end
    ]);
    expect(index.tgid.get(101)).toBe(100);
    expect(index.wakings.get(200)!.map((t) => t - 1e9)).toEqual([130, 1040]);
    expect(index.switchIns.get(200)!.map((t) => t - 1e9)).toEqual([150, 1450]);
  });

  it("splits each event's time, and the slowest events' wait by who held the CPUs", () => {
    const split = splitPath([{
      index: indexTrace(TRACE),
      serverPid: 100,
      clientPid: 200,
      latencies: [200, 600, 70],
      arrivals: [us(300), us(1600), us(1620)],
    }]);
    expect(split.events).toBe(3);
    expect(split.awake).toBe(1); // C
    // B alone is at the p99: written 40 us after its stamp, 410 us to run (360 behind the server, 50 with a CPU idle).
    expect(split.slow).toEqual({ events: 1, awake: 0, unplaced: 0, server: 40, wait: 410, client: 150 });
    // The client ran on CPU 1: its wait is CPU 1's holders' (the helper, then idle), not CPU 0's server main.
    expect(split.slowWait).toEqual({
      idle: 50,
      "server main": 0,
      "server helpers": 360,
      "client helpers": 0,
      other: 0,
    });
    expect(split.median).toEqual({ server: 40, wait: 410, client: 150 }); // of A and B: the upper of two
  });

  // One event of a client 200 (server 100) stamped at 1000 and read at `read`, in `lines`.
  const one = (lines: string[], read: number, latency = read - 1000): TracedWindow[] => [{
    index: indexTrace(lines.join("\n")),
    serverPid: 100,
    clientPid: 200,
    latencies: [latency],
    arrivals: [us(read)],
  }];
  const wait = (idle: number, main: number, helpers: number, other: number) => ({
    idle,
    "server main": main,
    "server helpers": helpers,
    "client helpers": 0,
    other,
  });

  it("charges the wait to whoever held the CPU from before the trace, and to the end", () => {
    // Another process (300) holds CPU 1 from before the trace's first line there, until the client's switch-in.
    const split = splitPath(one([
      switched(0, 0, [0], 100),
      woke(0, 1040, [100, 100], 200),
      switched(1, 1450, [300, 300], 200),
    ], 1600));
    expect(split.slow).toMatchObject({ events: 1, server: 40, wait: 410, client: 150 });
    expect(split.slowWait).toEqual(wait(0, 0, 0, 410));
    expect(indexTrace(switched(1, 1450, [300, 300], 200)).runs[1]).toEqual([
      [-Infinity, 1e9 + 1450, 300],
      [1e9 + 1450, Infinity, 200],
    ]);
  });

  it("charges a pinned client's wait to its own CPU's holder while the other CPU is idle", () => {
    // Placement apart: the server's CPU 0 is idle from 1050; the client waits on CPU 1 behind another process.
    const split = splitPath(one([
      switched(0, 0, [0], 100),
      switched(1, 900, [0], 300),
      woke(0, 1040, [100, 100], 200),
      switched(0, 1050, [100, 100], 0),
      switched(1, 1450, [300, 300], 200),
      switched(1, 1700, [200, 200], 0),
    ], 1600));
    expect(split.slowWait).toEqual(wait(0, 0, 0, 410));
  });

  it("splits from the wake-up that took the client to its read, not an earlier one of no data", () => {
    // Stamped at 1000; the client's helper wakes it at 1010 (a task done), it sleeps again at 1030; the write at 1040.
    const split = splitPath(one([
      switched(0, 0, [0], 100),
      switched(1, 900, [0], 201),
      woke(1, 1010, [201, 200], 200),
      switched(1, 1020, [201, 200], 200),
      switched(1, 1030, [200, 200], 0),
      woke(0, 1040, [100, 100], 200),
      switched(1, 1100, [0], 200),
    ], 1200));
    expect(split.slow).toMatchObject({ events: 1, server: 40, wait: 60, client: 100 });
  });

  it("counts preemption as wait, and a wake-up of the client on a CPU as none", () => {
    // Woken at 1040, on CPU 1 at 1100, preempted by 300 from 1150 to 1300, read at 1400.
    const preempted = splitPath(one([
      woke(0, 1040, [100, 100], 200),
      switched(1, 1100, [0], 200),
      switched(1, 1150, [200, 200], 300),
      switched(1, 1300, [300, 300], 200),
    ], 1400));
    expect(preempted.slow).toMatchObject({ events: 1, server: 40, wait: 210, client: 150 });
    expect(preempted.slowWait).toEqual(wait(60, 0, 0, 150));
    // On CPU 1 from 900 throughout: the wake-up at 1040 (as it went to sleep, before it did) ends no wait.
    const running = splitPath(one([switched(1, 900, [0], 200), woke(0, 1040, [100, 100], 200)], 1100));
    expect([running.awake, running.slow.events]).toEqual([1, 0]);
  });

  it("reads real tracefs lines: comms with spaces and dashes, no tgid, no irq-info, deadline priorities", () => {
    const index = indexTrace([
      " V8 DefaultWorke-201     (    200) [001] d..2. 1000.000100: sched_switch: prev_comm=V8 DefaultWorke " +
      "prev_pid=201 prev_prio=120 prev_state=S ==> next_comm=kworker/u8:0 next_pid=45 next_prio=120",
      " kworker/u8:0-events-45      (-------) [001] 1000.000200: sched_switch: prev_comm=kworker/u8:0 " +
      "prev_pid=45 prev_prio=120 prev_state=I ==> next_comm=sugov:0 next_pid=77 next_prio=-1",
      "          <idle>-0       (-------) [000] dNh2. 1000.000300: sched_waking: comm=V8 DefaultWorke pid=201 " +
      "prio=120 target_cpu=001",
    ].join("\n"));
    expect(index.tgid.get(201)).toBe(200);
    expect(index.tgid.has(45)).toBe(false);
    expect(index.switchIns.get(45)).toEqual([1e9 + 100]);
    expect(index.switchIns.get(77)).toEqual([1e9 + 200]);
    expect(index.wakings.get(201)).toEqual([1e9 + 300]);
  });

  it("does not split an event across events the kernel dropped, and counts them", () => {
    const lines = [
      "# entries-in-buffer/entries-written: 9/9   #P:2",
      switched(1, 900, [0], 300),
      woke(0, 1040, [100, 100], 200),
      "CPU:1 [LOST 123 EVENTS]",
      switched(1, 1450, [300, 300], 200),
    ];
    const split = splitPath(one(lines, 1600));
    expect([split.events, split.unplaced, split.slow.events, split.lost]).toEqual([1, 1, 0, 123]);
    expect(indexTrace(lines.join("\n")).gaps).toEqual([[1e9 + 900, 1e9 + 1450]]);
    // A buffer that filled and overwrote its oldest events: the header's counts, and the CPUs' late starts.
    const late = indexTrace(
      ["# entries-in-buffer/entries-written: 2/9   #P:2", "##### CPU 1 buffer started ####", lines[4]!]
        .join("\n"),
    );
    expect([late.lost, late.gaps]).toEqual([7, [[-Infinity, 1e9 + 1450]]]);
  });

  it("splits a row without events into nothing", () => {
    const split = splitPath([{ index: indexTrace(""), serverPid: 1, clientPid: 2, latencies: [], arrivals: [] }]);
    expect([split.events, split.awake, split.slow.events, split.slow.awake]).toEqual([0, 0, 0, 0]);
  });

  it("puts back tracefs's settings as read: the clock in use, a buffer not yet expanded", () => {
    expect(savedValue("trace_clock", "[local] global counter uptime perf mono\n")).toBe("local");
    expect(savedValue("buffer_size_kb", "1410\n")).toBe("1410");
    expect(savedValue("buffer_size_kb", "7 (expanded: 1408)\n")).toBe("1408");
    expect(savedValue("buffer_size_kb", "X\n")).toBeUndefined(); // the CPUs' sizes differ: not written back
    expect(savedValue("tracing_on", "1\n")).toBe("1");
  });

  it("stamps with CLOCK_MONOTONIC, the trace's mono clock, in every process alike", () => {
    const mono = Number(process.hrtime.bigint() / 1000n);
    const stamp = nowUs() - CLOCK_BASE_US;
    expect(stamp - mono).toBeGreaterThanOrEqual(0);
    expect(stamp - mono).toBeLessThan(50_000);
  });
});

// The real tracefs: root only (the bench's real-time rows need it too).
const root = process.getuid?.() === 0;

describe.skipIf(!root)("the latency bench's sched trace on this kernel (needs root)", () => {
  it("records this process's switches, and puts tracefs's settings back", async () => {
    const { readFileSync } = await import("node:fs");
    const { startSchedTrace } = await import("../bench/_sched-trace.ts");
    const setting = (f: string) => readFileSync(`/sys/kernel/tracing/${f}`, "utf8");
    startSchedTrace().stop(); // mounts tracefs where it was not
    const before = ["trace_clock", "events/sched/sched_switch/enable", "options/record-tgid"].map(setting);
    const trace = startSchedTrace();
    await new Promise((r) => setTimeout(r, 30)); // this thread sleeps: a switch out and back
    const index = indexTrace(trace.stop());
    expect(index.switchIns.get(process.pid)?.length).toBeGreaterThan(0);
    expect(index.tgid.get(process.pid)).toBe(process.pid);
    expect(["trace_clock", "events/sched/sched_switch/enable", "options/record-tgid"].map(setting)).toEqual(before);
  });
});
