/**
 * What the netlink benches (netlink-ingest.ts, netlink-steady.ts) share:
 * where the bench server and its helpers are, how a server is started on
 * each runtime, the C reference listeners, readings of a process's threads
 * from /proc, and what a measured span counts.
 */
import { readdirSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { parseStatCpuSeconds, statFieldsAfterComm } from "../src/sources/netlink/_thread-cpu.ts";
import { type LineChild as Proc, startLineChild } from "./_child.ts";

/** A runtime the bench server runs on. */
export type Runtime = "node" | "deno" | "bun";
/** taskwire's default receive buffer per CPU socket (the reference listener gets the same). */
export const RCVBUF = 32 * 1024 * 1024;
/** The windowed C reference's window: taskwire's default hand-off window (`--netlink-batch-window-ms`). */
export const REF_WINDOW_MS = 2;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const inDist = import.meta.url.includes("/dist/");
export const root = new URL(inDist ? "../../" : "../", import.meta.url).pathname;
export const script = (name: string) => new URL(`./${name}.${inDist ? "js" : "ts"}`, import.meta.url).pathname;

/** The command that starts bench/_netlink-server on `runtime` (Node from dist/, Deno and Bun from the sources). */
export function serverCommand(runtime: Runtime): [string, string[]] {
  // BENCH_NODE_FLAGS: extra flags for the Node server (--cpu-prof --cpu-prof-dir=DIR for the profiles in BENCHMARKS.md).
  const flags = process.env["BENCH_NODE_FLAGS"]?.split(" ").filter((f) => f !== "") ?? [];
  if (runtime === "node") return [process.execPath, [...flags, script("_netlink-server")]];
  const src = `${root}bench/_netlink-server.ts`;
  if (runtime === "deno") return [`${root}node_modules/.bin/deno`, ["run", "--allow-all", src]];
  return [`${root}node_modules/.bin/bun`, [src]];
}

/** utime+stime of every thread of process `pid` (`tid`: of that thread only), µs. */
export function processCpuUs(pid: number, tid?: number): number {
  const path = tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`;
  return parseStatCpuSeconds(readFileSync(path, "utf8"))! * 1e6;
}

/** The sum over the threads of process `pid` (`tids`: those only) of `read(file)` of each one's /proc `file`. */
export function sumThreads(pid: number, file: string, read: (text: string) => number, tids?: string[]): number {
  let sum = 0;
  for (const tid of tids ?? readdirSync(`/proc/${pid}/task`)) {
    try {
      sum += read(readFileSync(`/proc/${pid}/task/${tid}/${file}`, "utf8"));
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return sum;
}

/** Voluntary context switches (sleeps that ended in a wakeup) of every thread of process `pid`. */
export function processWakeups(pid: number): number {
  return sumThreads(pid, "status", (t) => Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(t)?.[1]));
}

/** Resident memory of process `pid` now, MiB (/proc/PID/status's VmRSS). */
export function processRssMib(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]) / 1024;
}

/** Minor page faults of process `pid` so far, every thread (/proc/PID/stat's minflt). */
export function processPageFaults(pid: number): number {
  return Number(statFieldsAfterComm(readFileSync(`/proc/${pid}/stat`, "utf8"))[7]); // field 10
}

/** The two C reference listeners, started: waking for every record, and waking once a window. */
export async function startRefs(ref: string): Promise<[Proc, Proc]> {
  const args = [String(availableParallelism()), String(RCVBUF)];
  const [perRecord] = await startLineChild(ref, args, (l) => l === "ready", { cwd: root });
  const [windowed] = await startLineChild(ref, [...args, String(REF_WINDOW_MS)], (l) => l === "ready", { cwd: root });
  return [perRecord, windowed];
}

/** A bench server's readings (its answer to "info"). */
export interface Info {
  records: number;
  kernelDrops: number;
  socketBuffer: number;
  /** The reader worker thread's CPU so far, when the runtime names its thread. */
  readerCpuSeconds?: number;
}
/** The subscribers' counts (the raw counter's answer to "mark"). */
export interface Counts {
  exits: number;
  lost: number;
  /** Response messages, and socket reads, the subscribers got. */
  messages: number;
  chunks: number;
}
/** A C reference listener's readings. */
export interface Ref {
  records: number;
  drops: number;
  cpuUs: number;
  wakeups: number;
}

/** What a measured span of a server's life counts (a storm row, a steady-rate row). */
export interface Span {
  records: number;
  kernelDrops: number;
  delivered: number;
  lost: number;
  /** Response messages the subscribers got (records per message: how well the hand-offs batch). */
  messages: number;
  serverUs: number;
  /** Of serverUs: the main thread's, the reader worker's (the rest: GC and libuv helper threads). */
  mainUs: number;
  readerUs: number;
  /** Voluntary context switches of the server's threads. */
  wakeups: number;
  ref: Ref;
  /** The C reference that wakes once a window. */
  refWindowed: Ref;
  seconds: number;
}

/** What the server and its subscribers counted between two readings. */
export function countedBetween(
  [info0, counts0]: readonly [Info, Counts],
  [info, counts]: readonly [Info, Counts],
): Pick<Span, "records" | "kernelDrops" | "delivered" | "lost" | "messages" | "readerUs"> {
  return {
    records: info.records - info0.records,
    kernelDrops: info.kernelDrops - info0.kernelDrops,
    delivered: counts.exits - counts0.exits,
    lost: counts.lost - counts0.lost,
    messages: counts.messages - counts0.messages,
    readerUs: ((info.readerCpuSeconds ?? NaN) - (info0.readerCpuSeconds ?? NaN)) * 1e6,
  };
}

/** Waits until the server's record count and the subscribers' counts stop moving. */
export async function settle(server: Proc, counter: Proc): Promise<[Info, Counts]> {
  let last = "";
  for (let i = 0; i < 100; i++) {
    await sleep(300);
    const info = await server.ask<Info>("info"), counts = await counter.ask<Counts>("mark");
    const now = `${info.records} ${counts.exits} ${counts.lost}`;
    if (now === last) return [info, counts];
    last = now;
  }
  throw new Error("the server or its subscribers never settled");
}
