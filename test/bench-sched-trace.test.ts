import { describe, expect, it } from "vitest";
import { CLOCK_BASE_US, nowUs } from "../bench/_clock.ts";
import { indexTrace, splitPath } from "../bench/_sched-trace.ts";

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
      [150, 310, 200],
      [310, 1000, 0],
      [1000, 1400, 101],
      [1400, 1450, 0],
      [1450, 1700, 200],
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
    expect(split.slow).toEqual({ events: 1, awake: 0, server: 40, wait: 410, client: 150 });
    expect(split.slowWait).toEqual({
      idle: 50,
      "server main": 180,
      "server helpers": 180,
      "client helpers": 0,
      other: 0,
    });
    expect(split.median).toEqual({ server: 40, wait: 410, client: 150 }); // of A and B: the upper of two
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
