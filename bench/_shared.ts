/**
 * What the end-to-end and latency benchmarks share: a client process that
 * counts events (bench/_stream-counter.ts or another script with the same
 * "ready"/"mark" protocol), a producer driving the sim at a fixed rate, and
 * sample records.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import type { ExitRecord } from "../src/kernel/exit-record.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { type LineChild, startLineChild } from "./_child.ts";
import { everyTick } from "./_clock.ts";

/**
 * Admission limits lifted: a benchmark's client process opens all its streams
 * from one address, which the per-principal limits (one address is one
 * principal without authentication) would refuse past 128.
 */
export const NO_ADMISSION_LIMITS = {
  maxStreams: 1e9,
  maxStreamsPerPrincipal: 1e9,
  callsPerSecond: 1e9,
  callBurst: 1e9,
};

/**
 * BENCH_OBS=off: servers without /metrics and the access log (both on by
 * default), to measure what they cost in a row of its own.
 */
export const OBSERVABILITY = process.env["BENCH_OBS"] === "off" ? { metrics: false, accessLog: false } : {};

/** The registry's per-principal listener limit lifted, for the same reason. */
export const NO_PRINCIPAL_LISTENER_LIMIT = { maxListenersPerPrincipal: 1e9 };

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A client process, answering "mark" with what it has counted (and its latencies since the last mark). */
export interface Counter {
  /** Its process id (taskset, nice, chrt and prlimit exec it: node's own). */
  readonly pid: number;
  /**
   * Its count, CPU time and, in latency mode, each event's latency since the
   * last mark (µs), with each event's arrival (nowUs()) when started with
   * BENCH_ARRIVALS=1.
   */
  mark(): Promise<{ events: number; cpuUs: number; latencies: number[]; arrivals?: number[] }>;
  stop(): void;
  /** Ends it at once (SIGKILL): for a round that failed, whose processes may not be listening. */
  kill(): void;
}

/** How a counter process is started. */
export interface CounterOptions {
  /** Extra environment (e.g. BENCH_PROTOCOL). */
  env?: Record<string, string>;
  /** The script in bench/ (compiled name); default _stream-counter.js. */
  script?: string;
  /** Niceness to start it with (via nice(1), so every thread of the process has it); needs root below 0. */
  nice?: number;
  /** A SCHED_RR priority to start it with (via chrt(1), every thread; see realtimeSelf); needs root. */
  realtime?: number;
  /** A CPU to run it on (via taskset(1), every thread); see pinSelf for the bench process's own. */
  cpu?: number;
}

/** `o` with the client asked for each event's arrival too (BENCH_ARRIVALS=1, _stream-counter.ts). */
export function withArrivals(o: CounterOptions): CounterOptions {
  return { ...o, env: { ...o.env, BENCH_ARRIVALS: "1" } };
}

/** Where a bench child process runs: its CPU, niceness and real-time priority. */
export type ChildPlacement = Pick<CounterOptions, "cpu" | "nice" | "realtime">;

/** The command line of a bench child process (a counter, a server): node, behind taskset, nice and chrt when asked. */
export function childCommand(args: string[], o: ChildPlacement): [string, string[]] {
  let argv = [process.execPath, ...args];
  if (o.cpu !== undefined) argv = ["taskset", "-c", String(o.cpu), ...argv];
  if (o.nice !== undefined) argv = ["nice", "-n", String(o.nice), ...argv];
  if (o.realtime !== undefined) argv = ["prlimit", RT_WATCHDOG, "chrt", "-r", String(o.realtime), ...argv];
  return [argv[0]!, argv.slice(1)];
}

/**
 * The watchdog of every real-time bench process (prlimit(1)'s RLIMIT_RTTIME,
 * soft:hard, µs): a thread that runs 3 s at real-time priority without
 * blocking gets SIGXCPU, at 4 s SIGKILL. Under SCHED_FIFO a main thread
 * spinning for a V8 worker queued behind it (or behind another process's
 * spinner) never yielded: it livelocked the machine for minutes, twice, in
 * the latency bench's real-time rows (thirtieth session), and the watchdog
 * killed one such spinner in the thirty-first. SCHED_RR (realtimeSelf)
 * ends that livelock; the watchdog stays for whatever else spins, and a
 * round then fails, saying so.
 */
const RT_WATCHDOG = "--rttime=3000000:4000000";

export async function startCounter(
  url: string,
  streams: number,
  mode: "read" | "idle" | "latency",
  o: CounterOptions = {},
): Promise<Counter> {
  const script = new URL(`./${o.script ?? "_stream-counter.js"}`, import.meta.url).pathname;
  const [cmd, argv] = childCommand([script, url, String(streams), "0-7", mode], o);
  let child: LineChild;
  try {
    [child] = await startLineChild(cmd, argv, (line) => line === "ready", o.env === undefined ? {} : { env: o.env });
  } catch (err) {
    // The counter prints "failed <why>" when a stream is refused before its opening message.
    const refused = /: failed (.*)$/.exec((err as Error).message)?.[1];
    throw refused === undefined ? err : new Error(`a ${mode} stream was refused: ${refused}`);
  }
  return {
    pid: child.proc.pid!,
    mark: () => child.ask("mark"),
    stop: () => void child.end(),
    kill: () => void child.proc.kill("SIGKILL"),
  };
}

/**
 * Produces exits as fast as the listeners drain them: a batch of 256 whenever
 * the fullest queue is under half of `capacity`. Returns what stops it.
 */
export function produceWhileDrained(
  source: SimSource,
  server: { stats(): { deepestQueue: number } },
  capacity: number,
): () => void {
  let running = true;
  const tick = () => {
    if (!running) return;
    if (server.stats().deepestQueue < capacity / 2) source.kernel.exitNow(256);
    setImmediate(tick);
  };
  setImmediate(tick);
  return () => (running = false);
}

/**
 * Produces `perSecond` exits per second in 1 ms ticks until stopped, making
 * up at most `catchUpMs` of a late tick's backlog (everyTick).
 */
export function produceAt(source: SimSource, perSecond: number, catchUpMs?: number): () => void {
  return everyTick(perSecond, (n) => source.kernel.exitNow(n), catchUpMs);
}

/** `n` exit records from the sim (every CPU watched). */
export function sampleRecords(n: number): ExitRecord[] {
  const source = createSimSource({ cpus: 8, exitRate: 0, seed: 9 }) as SimSource;
  const out: ExitRecord[] = [];
  source.kernel.onRecord = (r) => out.push(r);
  source.kernel.watch([0, 1, 2, 3, 4, 5, 6, 7], true);
  source.kernel.exitNow(n);
  return out;
}

/**
 * Runs every thread of this process (the servers, their GC and libuv
 * threads) on `cpu` until the returned function restores the affinity it
 * had. Throws, saying what is missing, without taskset(1) or a second CPU.
 */
export function pinSelf(cpu: number): () => void {
  if (availableParallelism() < 2) throw new Error("needs at least 2 CPUs");
  const taskset = (...args: string[]) => execFileSync("taskset", args, { encoding: "utf8" });
  let before: string;
  try {
    before = taskset("-c", "-p", String(process.pid)).trim().split(/:\s*/).pop()!;
  } catch {
    throw new Error("needs taskset(1) (util-linux)");
  }
  taskset("-a", "-c", "-p", String(cpu), String(process.pid));
  return () => void taskset("-a", "-c", "-p", before, String(process.pid));
}

/**
 * Runs every thread of this process at SCHED_RR `priority`, under the
 * real-time watchdog (RT_WATCHDOG), until the returned function puts them
 * back to SCHED_OTHER. Round-robin, not FIFO: at one priority a thread that
 * runs a whole timeslice (sched_rr_timeslice_ms, 100 ms) without blocking
 * yields its CPU to its peers, so a main thread spinning for a worker
 * queued behind it lets the worker run; a thread that blocks within its
 * slice, as an event loop between ticks does, is scheduled as under FIFO.
 * Throws, saying what is missing, without root, chrt(1) or prlimit(1).
 */
export function realtimeSelf(priority: number): () => void {
  if (process.getuid?.() !== 0) throw new Error("SCHED_RR needs root");
  const run = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { encoding: "utf8" });
  const pid = String(process.pid);
  try {
    run("prlimit", "--pid", pid, RT_WATCHDOG); // first: never real-time without the watchdog
    run("chrt", "-r", "-a", "-p", String(priority), pid);
  } catch (err) {
    throw new Error(
      `needs chrt(1) and prlimit(1) (util-linux), SCHED_RR: ${(err as Error).message.split("\n")[0]}`,
    );
  }
  // The limit stays: it watches only real-time threads, and raising it back needs CAP_SYS_RESOURCE, which root in a
  // container may lack.
  return () => void run("chrt", "-o", "-a", "-p", "0", pid);
}

/** `work`, or a rejection saying that `what` did not finish in `ms` (a round that hangs fails instead). */
export function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish in ${Math.round(ms / 1000)} s`)), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

/** The host's CPU steal (share of this machine's CPU time), from /proc/stat; undefined off Linux. */
export function cpuTimes(): { steal: number; total: number } | undefined {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
    return { steal: f[7] ?? 0, total: f.reduce((a, b) => a + b, 0) };
  } catch {
    return undefined;
  }
}

/** The host's steal since `a` (cpuTimes()), as a share of this machine's CPU time, %; undefined off Linux. */
export function stealSince(a: ReturnType<typeof cpuTimes>): number | undefined {
  const b = cpuTimes();
  if (a === undefined || b === undefined || b.total === a.total) return undefined;
  return (100 * (b.steal - a.steal)) / (b.total - a.total);
}
