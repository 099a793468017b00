/**
 * Server CPU between storms, against the real kernel: a taskwire server
 * (Node, the netlink source at its defaults) streaming to one binary
 * subscriber (bench/_raw-counter.ts) while the host exits threads at a steady
 * rate (test/native/tw-helper.c `pace`: one thread created and joined every
 * 1/rate s), and then with no exits at all, beside the two C reference
 * listeners of the storm table over the same seconds. Most hosts spend most
 * of their time here, far from the storm table's 15,000 exits/s, and here the
 * cost is per hand-off and per wakeup rather than per record.
 *
 * CPU is each thread's schedstat (the scheduler's run time, ns): utime and
 * stime are sampled at timer ticks, which miscounts threads that run for
 * microseconds at a time. Each rate's row is measured after a warm-up at that
 * rate; the idle row follows in the same server, after a quiet spell for V8's
 * idle-time collections to pass.
 */
import { availableParallelism } from "node:os";
import { helperPath, runHelper } from "../test/native.ts";
import { type LineChild as Proc, startLineChild } from "./_child.ts";
import { buildRefListener } from "./_ref-listener.ts";
import {
  countedBetween,
  type Counts,
  type Info,
  processWakeups,
  type Ref,
  REF_WINDOW_MS,
  root,
  script,
  serverCommand,
  settle,
  type Span,
  startRefs,
  sumThreads,
} from "./_netlink-shared.ts";
import { parseSchedstatSeconds } from "../src/sources/netlink/_thread-cpu.ts";

/** Options of the steady-rate bench. */
export interface SteadyOptions {
  /** Exits a second of each measured row (BENCH_STEADY_RATES; default 100 and 1,000). */
  readonly rates: readonly number[];
  /** Seconds each row is measured (BENCH_STEADY_SECONDS; default 10). */
  readonly seconds: number;
  /** Rounds (BENCH_ROUNDS; default 1). */
  readonly rounds: number;
}

/** Warm-up at the row's rate before it is measured, seconds: code paths compiled at that rate. */
const WARM_UP_S = 8;
/** Quiet before the idle row is measured, seconds: V8 collects after a process goes idle ("memory reducer"). */
const QUIET_S = 15;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Run time of every thread of process `pid` (`tid`: that thread's), µs, from schedstat. */
function runUs(pid: number, tid?: number): number {
  return sumThreads(
    pid,
    "schedstat",
    (t) => parseSchedstatSeconds(t) ?? 0,
    tid === undefined ? undefined : [String(tid)],
  ) *
    1e6;
}

interface Steady extends Span {
  /** Exits a second asked of the helper; 0 for the idle row. */
  rate: number;
}

/** The server's processes for one round: the server, its subscriber, and how to measure a span of time. */
interface Round {
  readonly server: Proc;
  readonly counter: Proc;
  readonly pid: number;
  readonly ref: string;
}

/** Exits `rate` a second for `seconds` (none for rate 0). */
async function load(rate: number, seconds: number): Promise<void> {
  if (rate === 0) return void (await sleep(seconds * 1000));
  const r = await runHelper(["pace", String(Math.round(rate * seconds)), String(rate)]);
  if (r.code !== 0) throw new Error("the pace helper failed");
}

/** One measured span: `rate` exits a second for `seconds`, with both C references listening over the same span. */
async function measure(r: Round, rate: number, seconds: number): Promise<Steady> {
  const [ref, refWindowed] = await startRefs(r.ref);
  const info0 = await r.server.ask<Info>("info"), counts0 = await r.counter.ask<Counts>("mark");
  const cpu0 = runUs(r.pid), main0 = runUs(r.pid, r.pid), wakeups0 = processWakeups(r.pid), t0 = performance.now();
  await load(rate, seconds);
  // Until every record reached the subscriber: the span (and its CPU) ends when the counts stop moving.
  const [info, counts] = rate === 0
    ? [await r.server.ask<Info>("info"), await r.counter.ask<Counts>("mark")] as const
    : await settle(r.server, r.counter);
  const elapsed = (performance.now() - t0) / 1000;
  const serverUs = runUs(r.pid) - cpu0,
    mainUs = runUs(r.pid, r.pid) - main0,
    wakeups = processWakeups(r.pid) - wakeups0;
  return {
    rate,
    seconds: elapsed,
    ...countedBetween([info0, counts0], [info, counts]),
    serverUs,
    mainUs,
    wakeups,
    ref: (await ref.end<Ref>())!,
    refWindowed: (await refWindowed.end<Ref>())!,
  };
}

/** A server with one subscriber: each rate's row after its warm-up, then the idle row. */
async function round(o: SteadyOptions, ref: string): Promise<Steady[]> {
  const [bin, args] = serverCommand("node");
  const [server, first] = await startLineChild(bin, args, (l) => l.startsWith("{"), { cwd: root });
  const { url, pid } = JSON.parse(first) as { url: string; pid: number };
  try {
    const cpus = `0-${availableParallelism() - 1}`;
    const [counter] = await startLineChild(
      process.execPath,
      [script("_raw-counter"), url, "1", cpus],
      (l) => l === "ready",
      { cwd: root },
    );
    const r: Round = { server, counter, pid, ref };
    // A storm first, as the storm table's warm-up: every code path compiled before the slowest rate is measured.
    await runHelper(["storm", "2000", "4"]);
    await settle(server, counter);
    const out: Steady[] = [];
    for (const rate of o.rates) {
      await load(rate, WARM_UP_S);
      await settle(server, counter);
      out.push(await measure(r, rate, o.seconds));
    }
    await sleep(QUIET_S * 1000);
    out.push(await measure(r, 0, o.seconds));
    await counter.end();
    return out;
  } finally {
    await server.end();
  }
}

const f1 = (n: number) => n.toFixed(1);
const msPerS = (us: number, s: number) => us / 1000 / s;

function row(m: Steady, n: number): string[] {
  const s = m.seconds, per = (us: number, records: number) => (records > 0 ? f1(us / records) : "-");
  const refMs = (x: Ref) => f1(msPerS(x.cpuUs, s));
  const ratio = (x: Ref) => (m.rate > 0 && x.cpuUs > 0 ? (m.serverUs / x.cpuUs).toFixed(1) : "-");
  return [
    String(n),
    m.rate === 0 ? "idle (no exits)" : `${m.rate} exits/s`,
    String(m.records),
    String(m.kernelDrops + m.ref.drops + m.refWindowed.drops),
    m.rate === 0 ? "-" : `${m.delivered} (lost ${m.lost}) in ${m.messages} messages`,
    `${f1(msPerS(m.serverUs, s))} (${f1(m.serverUs / 1e4 / s)}% of a core)`,
    per(m.serverUs, m.records),
    `${f1(msPerS(m.mainUs, s))} / ${f1(msPerS(m.readerUs, s))} / ${f1(msPerS(m.serverUs - m.mainUs - m.readerUs, s))}`,
    f1(m.wakeups / s),
    `${refMs(m.ref)} / ${refMs(m.refWindowed)}`,
    `${f1(m.ref.wakeups / s)} / ${f1(m.refWindowed.wakeups / s)}`,
    `${ratio(m.ref)} / ${ratio(m.refWindowed)}`,
  ];
}

/** Runs the steady-rate bench; returns its table's rows. */
export async function benchNetlinkSteady(o: SteadyOptions): Promise<string[][]> {
  if (o.rates.some((r) => !(r > 0))) throw new RangeError(`steady rates must be positive, got ${o.rates.join(",")}`);
  helperPath(); // compiled before any row
  const ref = buildRefListener();
  const rows: string[][] = [[
    "round",
    "load",
    "records",
    "kernel drops (taskwire and both C)",
    "delivered to the subscriber",
    "server CPU ms/s",
    "us/record",
    "main / reader / other threads, ms/s",
    "server wakeups/s",
    `C ref ms/s: wakes per record / ${REF_WINDOW_MS} ms window`,
    "C ref wakeups/s",
    "server CPU / C ref's",
  ]];
  for (let n = 1; n <= o.rounds; n++) for (const m of await round(o, ref)) rows.push(row(m, n));
  rows.push([
    "",
    `Node, 1 binary subscriber, ${o.seconds} s a row after ${WARM_UP_S} s at its rate (the idle row after ${QUIET_S} s quiet); CPU from schedstat`,
    ...Array(10).fill(""),
  ]);
  return rows;
}
