/**
 * Where a latency row's time goes, read from the kernel's scheduler trace
 * (tracefs: sched_switch and sched_waking on the "mono" clock, which is
 * nowUs()'s, so a stamp and a trace line compare directly). Root only.
 *
 * Each event's stamp -> read is split in three:
 *  - server: the stamp to the write that wakes the client's main thread
 *    (sched_waking of it), all of the server's own path;
 *  - wait: woken to on a CPU (sched_switch to it);
 *  - client: on a CPU to the event read (its SDK's decoding and iterator).
 * An event that came while the client was awake (no wake-up between its stamp
 * and its read) is counted apart. For the slowest 1% the wait is split again,
 * instant by instant: while a CPU is idle the wait is the host's (on a VM a
 * woken vCPU that had halted runs when the host schedules it), and while both
 * CPUs are busy it is charged half to each CPU's thread: the server's main
 * thread, its helpers (V8's GC and compiler threads, libuv's), the client's
 * helpers, or another process.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { CLOCK_BASE_US } from "./_clock.ts";

const TRACEFS = "/sys/kernel/tracing";

// What startSchedTrace sets, and to what; each file's earlier value is put back by stop().
const SETTINGS: [file: string, value: string][] = [
  ["tracing_on", "0"],
  ["trace_clock", "mono"],
  ["buffer_size_kb", "16384"],
  ["options/record-tgid", "1"],
  ["events/sched/sched_switch/enable", "1"],
  ["events/sched/sched_waking/enable", "1"],
];

/** A scheduler trace being recorded. */
export interface SchedTrace {
  /** Stops it, puts tracefs back as it was, and returns the trace's text. */
  stop(): string;
}

// A tracefs file's current value: trace_clock lists every clock with the one in use in brackets.
function current(file: string): string {
  const text = readFileSync(`${TRACEFS}/${file}`, "utf8").trim();
  return /\[(\S+)\]/.exec(text)?.[1] ?? text;
}

/**
 * Starts recording sched_switch and sched_waking for every CPU, tracefs's
 * earlier settings kept to be put back; mounts tracefs at
 * /sys/kernel/tracing if it is not there. Throws, saying what is missing,
 * without root or tracefs.
 */
export function startSchedTrace(): SchedTrace {
  if (process.getuid?.() !== 0) throw new Error("a sched trace needs root");
  let before: [string, string][];
  try {
    // Not mounted on a fresh machine (the kernel has it; debugfs's tracing/ mounts it too): mounted here, and left.
    if (!existsSync(`${TRACEFS}/trace`)) execFileSync("mount", ["-t", "tracefs", "nodev", TRACEFS], { stdio: "pipe" });
    before = SETTINGS.map(([file]) => [file, current(file)]);
  } catch (err) {
    throw new Error(`a sched trace needs tracefs at ${TRACEFS} (${(err as Error).message.split("\n")[0]})`);
  }
  const put = (file: string, value: string) => writeFileSync(`${TRACEFS}/${file}`, value);
  const restore = () => {
    put("tracing_on", "0");
    for (const [file, value] of before.slice(1).reverse()) put(file, value);
    put("tracing_on", before[0]![1]);
  };
  try {
    for (const [file, value] of SETTINGS) put(file, value);
    put("trace", ""); // emptied
    put("tracing_on", "1");
  } catch (err) {
    restore();
    throw err;
  }
  return {
    stop() {
      put("tracing_on", "0");
      const text = readFileSync(`${TRACEFS}/trace`, "utf8");
      restore();
      return text;
    },
  };
}

/** Who held a CPU at some instant. */
type Holder = "idle" | "server main" | "server helpers" | "client helpers" | "other";

/** A trace, indexed: who ran where and when, and each thread's wake-ups and switch-ins (µs of CLOCK_MONOTONIC). */
export interface TraceIndex {
  /** Each CPU's runs, in order: [start, end, thread id]. */
  runs: [start: number, end: number, tid: number][][];
  /** Each thread's process (its thread group). */
  tgid: Map<number, number>;
  wakings: Map<number, number[]>;
  switchIns: Map<number, number[]>;
}

const LINE = /^\s*.*?-(\d+)\s+\(\s*([\d-]+)\)\s+\[(\d+)\]\s+\S+\s+(\d+\.\d+):\s+(sched_switch|sched_waking):\s+(.*)$/;
const SWITCH = /prev_pid=\d+ prev_prio=\d+ prev_state=\S+ ==> next_comm=.* next_pid=(\d+) next_prio=\d+$/;
const WAKING = / pid=(\d+) prio=\d+ target_cpu=\d+$/;

const pushTo = (m: Map<number, number[]>, k: number, v: number) => {
  const a = m.get(k);
  if (a === undefined) m.set(k, [v]);
  else a.push(v);
};

/** Indexes a trace's text (tracefs's `trace` file with record-tgid on). */
export function indexTrace(text: string): TraceIndex {
  const index: TraceIndex = { runs: [], tgid: new Map(), wakings: new Map(), switchIns: new Map() };
  const running: { tid: number; since: number }[] = [];
  for (const line of text.split("\n")) {
    const m = LINE.exec(line);
    if (m === null) continue;
    const [, tid, tgid, cpuText, seconds, event, rest] = m;
    const cpu = Number(cpuText), at = Math.round(Number(seconds) * 1e6);
    if (/^\d+$/.test(tgid!)) index.tgid.set(Number(tid), Number(tgid));
    if (event === "sched_waking") {
      const woken = WAKING.exec(rest!);
      if (woken !== null) pushTo(index.wakings, Number(woken[1]), at);
      continue;
    }
    const next = SWITCH.exec(rest!);
    if (next === null) continue;
    const was = running[cpu];
    if (was !== undefined) (index.runs[cpu] ??= []).push([was.since, at, was.tid]);
    running[cpu] = { tid: Number(next[1]), since: at };
    pushTo(index.switchIns, Number(next[1]), at);
  }
  return index;
}

// The first of `sorted` at or after `t`, or undefined.
function firstFrom(sorted: number[] | undefined, t: number): number | undefined {
  if (sorted === undefined) return undefined;
  let lo = 0, hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! < t) lo = mid + 1;
    else hi = mid;
  }
  return sorted[lo];
}

/** One row's split (µs): medians over its events, means over its slowest 1%. */
export interface PathSplit {
  events: number;
  /** Events that came while the client was awake (not split). */
  awake: number;
  median: { server: number; wait: number; client: number };
  /** The slowest 1% (at or over the pooled p99): those split (means), and those that came while the client was awake. */
  slow: { events: number; awake: number; server: number; wait: number; client: number };
  /** The slowest 1%'s wait, µs per event, by who held the CPUs. */
  slowWait: Record<Holder, number>;
}

/** One window's trace, its two processes, and each event's latency and arrival (nowUs()). */
export interface TracedWindow {
  index: TraceIndex;
  serverPid: number;
  clientPid: number;
  latencies: number[];
  arrivals: number[];
}

interface Split {
  latency: number;
  server: number;
  wait: number;
  client: number;
  woken: number;
}

// Each event's split in its window, or undefined for one that came while its client was awake.
function splits(w: TracedWindow): (Split | undefined)[] {
  const wakings = w.index.wakings.get(w.clientPid), ins = w.index.switchIns.get(w.clientPid);
  return w.latencies.map((latency, i) => {
    const read = w.arrivals[i]! - CLOCK_BASE_US, stamp = read - latency;
    const woken = firstFrom(wakings, stamp);
    if (woken === undefined || woken > read) return undefined;
    const ran = Math.min(firstFrom(ins, woken) ?? read, read);
    return { latency, server: woken - stamp, wait: ran - woken, client: read - ran, woken };
  });
}

// Who held `cpu` at `t`.
function holder(w: TracedWindow, cpu: number, t: number): Holder {
  const runs = w.index.runs[cpu] ?? [];
  let lo = 0, hi = runs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (runs[mid]![0] <= t) lo = mid + 1;
    else hi = mid;
  }
  const run = runs[lo - 1];
  if (run === undefined || run[1] <= t || run[2] === 0) return "idle";
  const tid = run[2], tgid = w.index.tgid.get(tid);
  if (tgid === w.serverPid) return tid === tgid ? "server main" : "server helpers";
  if (tgid === w.clientPid && tid !== tgid) return "client helpers";
  return "other";
}

// The wait from `from` to `to`, µs by holder, sampled each µs.
function waitBy(w: TracedWindow, from: number, to: number, into: Record<Holder, number>): void {
  const cpus = w.index.runs.length;
  for (let t = from; t < to; t++) {
    const held = Array.from({ length: cpus }, (_, c) => holder(w, c, t));
    if (held.includes("idle")) into.idle++;
    else for (const h of held) into[h] += 1 / cpus;
  }
}

const noWait = (): Record<Holder, number> => ({
  idle: 0,
  "server main": 0,
  "server helpers": 0,
  "client helpers": 0,
  other: 0,
});
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** The split of a row's windows (its rounds), pooled. */
export function splitPath(windows: TracedWindow[]): PathSplit {
  const all = windows.flatMap((w) => splits(w).map((s) => ({ s, w })));
  const split = all.flatMap(({ s }) => s === undefined ? [] : [s]);
  const pooled = windows.flatMap((w) => w.latencies).sort((a, b) => a - b);
  const p99 = pooled[Math.floor(0.99 * pooled.length)]!;
  const slow = all.filter(({ s }) => s !== undefined && s.latency >= p99) as { s: Split; w: TracedWindow }[];
  const slowWait = noWait();
  // One message's events share their wake-up: its wait is sampled once and charged to each of its events.
  const byWake = new Map<string, number>();
  for (const { s, w } of slow) {
    const key = `${w.clientPid}:${s.woken}`;
    byWake.set(key, (byWake.get(key) ?? 0) + 1);
  }
  for (const { s, w } of slow) {
    const key = `${w.clientPid}:${s.woken}`;
    const n = byWake.get(key);
    if (n === undefined) continue;
    byWake.delete(key);
    const one = noWait();
    waitBy(w, s.woken, s.woken + s.wait, one);
    for (const h of Object.keys(one) as Holder[]) slowWait[h] += (one[h] * n) / slow.length;
  }
  return {
    events: all.length,
    awake: all.length - split.length,
    median: {
      server: median(split.map((s) => s.server)),
      wait: median(split.map((s) => s.wait)),
      client: median(split.map((s) => s.client)),
    },
    slow: {
      events: slow.length,
      awake: pooled.length - pooled.findIndex((l) => l >= p99) - slow.length,
      server: mean(slow.map(({ s }) => s.server)),
      wait: mean(slow.map(({ s }) => s.wait)),
      client: mean(slow.map(({ s }) => s.client)),
    },
    slowWait,
  };
}
