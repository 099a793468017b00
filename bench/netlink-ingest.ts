/**
 * Server CPU per kernel record during the fastest exit storm this machine
 * makes (one thread-storm process per CPU, threads created and joined four
 * at a time), against the real kernel. Each row is one storm (after a
 * warm-up: see warmUp), then the same storm again right after it, reported
 * beside it: a taskwire server in its own process (Node from dist/, Deno and Bun from the sources,
 * the netlink source at its defaults) streaming every record to 1, 10 or 100
 * binary subscribers (one counting process, bench/_raw-counter.ts; each
 * listener at the default buffer, but the last row's: see DEEP_BUFFER), and in
 * the same storm the C reference listener (bench/c/ref-listener.c: per-CPU
 * sockets, recvmmsg, every field decoded into a C struct) twice: waking for
 * every record (the target's floor), and waking once a 2 ms window as
 * taskwire's reader does. The server's CPU is utime+stime of its whole
 * process (every thread) from /proc/<pid>/stat, from the storm's start until
 * every record reached every subscriber; its wakeups are the voluntary
 * context switches of all its threads (/proc/<pid>/task/<tid>/status).
 */
import { availableParallelism } from "node:os";
import { helperPath, runHelper } from "../test/native.ts";
import { buildRefListener } from "./_ref-listener.ts";
import { type LineChild as Proc, startLineChild } from "./_child.ts";
import {
  countedBetween,
  type Counts,
  type Info,
  processCpuUs,
  processPageFaults,
  processRssMib,
  processWakeups,
  type Ref,
  REF_WINDOW_MS,
  root,
  type Runtime,
  script,
  serverCommand,
  settle,
  type Span,
  startRefs,
} from "./_netlink-shared.ts";

/** Options of the netlink bench. */
export interface IngestOptions {
  /** Thread exits per storm (split between one storm process per CPU). */
  threads: number;
  /** Storms per configuration (BENCH_ROUNDS; default 1). */
  rounds?: number;
}

/** A row: the server's runtime, its subscribers, and their `buffer` (undefined: the server's default, 8,192). */
interface Config {
  runtime: Runtime;
  subscribers: number;
  buffer?: number | undefined;
}

/**
 * The targets are read with the subscribers' default buffer (8,192 exits
 * queued and retained per listener), what a client gets unless it asks. The
 * last row asks for 65,536, as every row did until the seventeenth session:
 * a deeper ring keeps each Exit body's slab alive 8 times as long, past the
 * young collections, so the bodies it lets go of are collected only by major
 * collections (BENCHMARKS.md, "The bench's subscribers at the default
 * buffer, and what a deep ring costs"). It is reported, not held to a target.
 */
const DEEP_BUFFER = 65536;
// BENCH_CONFIGS=node:1,bun:1 runs only those rows (for profiling); node:1:65536 asks for that buffer.
const CONFIGS: Config[] = process.env["BENCH_CONFIGS"]?.split(",").map((c) => {
  const [runtime, n, buffer] = c.split(":");
  if (buffer !== undefined && !(Number.isInteger(Number(buffer)) && Number(buffer) > 0)) {
    throw new RangeError(`BENCH_CONFIGS: a row's buffer must be a positive integer, got "${buffer}" in "${c}"`);
  }
  return {
    runtime: runtime as Runtime,
    subscribers: Number(n),
    buffer: buffer === undefined ? undefined : Number(buffer),
  };
}) ?? [
  { runtime: "node", subscribers: 1 },
  { runtime: "node", subscribers: 10 },
  { runtime: "node", subscribers: 100 },
  { runtime: "deno", subscribers: 1 },
  { runtime: "bun", subscribers: 1 },
  { runtime: "node", subscribers: 1, buffer: DEEP_BUFFER },
];
/** Whether `m` is Node's row for `n` subscribers at the default buffer. */
const isNodeRow = (m: Measured, n: number) =>
  m.runtime.startsWith("node") && m.subscribers === n && m.buffer === undefined;
const hasRow = (all: Measured[][], n: number) => all[0]?.some((m) => isNodeRow(m, n));
const TARGET_US = 8, TARGET_EXTRA_US = 1, TARGET_RATIO = 3;
/** Thread exits of the unmeasured warm-up storm of a row (but the 100-subscriber row's: see warmUp). */
const WARM_UP = 2000;

/**
 * The storms of a row: one storm, or for 100 streams five storms a
 * hundredth as long, each drained before the next. As fast, but 100 streams
 * of a whole storm are more events than the memory budget lets the server
 * queue while two cores encode and send them, and a row that overflows its
 * queues measures the drops instead of the streams.
 */
function storms(threads: number, subscribers: number): number[] {
  return subscribers >= 100 ? Array<number>(5).fill(Math.ceil(threads / 100)) : [threads];
}

/**
 * The unmeasured storms before a row: one of WARM_UP exits, so that the row
 * is measured with its code paths compiled. For 100 streams, the row's own
 * storms: each listener keeps the last 8,192 exits it sent for a resume (the
 * default queue size), in a ring that grows as it fills, and the 1- and
 * 10-subscriber rows' 200,000 exits are measured with their rings full. A
 * 100-stream row measured while its rings grow (its first 10,000 exits) was
 * charged for 100 rings' growth, a one-time cost per new stream, spread over
 * a twentieth of the exits (BENCHMARKS.md gives both figures).
 */
function warmUp(threads: number, subscribers: number): number[] {
  return subscribers >= 100 ? storms(threads, subscribers) : [WARM_UP];
}

/**
 * The row's storms run again right after it ("again, right after"): a
 * server whose heap and allocator already grew to a storm's size pays less
 * (17,000 minor page faults in a first 100,000-exit storm, 2,300-4,700 in
 * one right after, at ~14.5 us each on the host in BENCHMARKS.md), but one
 * that idled in between pays again (V8 and malloc give memory back), so the
 * row, and its verdicts, are the first storm.
 */
async function again(server: Proc, counter: Proc, pid: number, threads: number[]): Promise<Again> {
  const before = await settle(server, counter);
  const cpu0 = processCpuUs(pid), faults0 = processPageFaults(pid);
  const { settled = before } = await stormsDrained(server, counter, threads);
  return {
    us: processCpuUs(pid) - cpu0,
    pageFaults: processPageFaults(pid) - faults0,
    ...countedBetween(before, settled),
  };
}

/** Runs `threads`' storms one after another, each drained; the seconds they took and the last readings. */
async function stormsDrained(
  server: Proc,
  counter: Proc,
  threads: number[],
): Promise<{ seconds: number; settled?: [Info, Counts] }> {
  let seconds = 0, settled: [Info, Counts] | undefined;
  for (const n of threads) {
    seconds += await storm(n);
    settled = await settle(server, counter);
  }
  return settled === undefined ? { seconds } : { seconds, settled };
}

/** The row's storms run again right after it. */
interface Again {
  us: number;
  pageFaults: number;
  records: number;
  kernelDrops: number;
  delivered: number;
  lost: number;
}

/** One storm: the fastest this machine makes, one storm process per CPU. */
async function storm(threads: number): Promise<number> {
  const n = availableParallelism();
  const t0 = performance.now();
  const runs = await Promise.all(
    Array.from({ length: n }, () => runHelper(["storm", String(Math.ceil(threads / n)), "4"])),
  );
  if (runs.some((r) => r.code !== 0)) throw new Error("the storm helper failed");
  return (performance.now() - t0) / 1000;
}

interface Measured extends Span {
  /** Minor page faults of the server's process. */
  pageFaults: number;
  /** The server's resident memory before the row's storms and after them, MiB. */
  rssMib: [number, number];
  /** The same storms run again right after the row. */
  again: Again;
  runtime: string;
  subscribers: number;
  /** The subscribers' buffer (undefined: the server's default). */
  buffer: number | undefined;
  rcvbuf: number;
}

async function measure(c: Config, o: { threads: number; ref: string }): Promise<Measured> {
  const { runtime, subscribers, buffer } = c;
  const [bin, args] = serverCommand(runtime);
  const [server, first] = await startLineChild(bin, args, (l) => l.startsWith("{"), { cwd: root });
  const { url, pid, runtime: label } = JSON.parse(first) as { url: string; pid: number; runtime: string };
  try {
    const cpus = `0-${availableParallelism() - 1}`;
    const [counter] = await startLineChild(
      process.execPath,
      [script("_raw-counter"), url, String(subscribers), cpus, String(buffer ?? 0)],
      (l) => l === "ready",
      { cwd: root },
    );
    await stormsDrained(server, counter, warmUp(o.threads, subscribers));
    // The C listeners from here: they count the row's storms, as the server's figures do.
    const [ref, refWindowed] = await startRefs(o.ref);
    const info0 = await server.ask<Info>("info"), counts0 = await counter.ask<Counts>("mark");
    const cpu0 = processCpuUs(pid), main0 = processCpuUs(pid, pid), wakeups0 = processWakeups(pid);
    const faults0 = processPageFaults(pid), rss0 = processRssMib(pid);
    const { seconds, settled } = await stormsDrained(server, counter, storms(o.threads, subscribers));
    const [info, counts] = settled!;
    const rssMib: [number, number] = [rss0, processRssMib(pid)];
    const serverUs = processCpuUs(pid) - cpu0, mainUs = processCpuUs(pid, pid) - main0;
    const wakeups = processWakeups(pid) - wakeups0, pageFaults = processPageFaults(pid) - faults0;
    const refOut = (await ref.end<Ref>())!, refWindowedOut = (await refWindowed.end<Ref>())!;
    const rerun = await again(server, counter, pid, storms(o.threads, subscribers));
    await counter.end();
    return {
      runtime: label,
      subscribers,
      buffer,
      ...countedBetween([info0, counts0], [info, counts]),
      serverUs,
      mainUs,
      wakeups,
      pageFaults,
      rssMib,
      again: rerun,
      ref: refOut,
      refWindowed: refWindowedOut,
      seconds,
      rcvbuf: info.socketBuffer,
    };
  } finally {
    await server.end();
  }
}

const perRecord = (us: number, records: number) => us / Math.max(records, 1);
const f1 = (n: number) => n.toFixed(1);
const f2 = (n: number) => n.toFixed(2);
const range = (xs: number[], fmt: (n: number) => string) => {
  const [lo, hi] = [fmt(Math.min(...xs)), fmt(Math.max(...xs))];
  return lo === hi ? lo : `${lo}-${hi}`;
};

const perThousand = (n: number, records: number) => String(Math.round((1000 * n) / Math.max(records, 1)));

function row(m: Measured, one: Measured | undefined, round: number): string[] {
  const us = perRecord(m.serverUs, m.records), refUs = perRecord(m.ref.cpuUs, m.ref.records);
  const windowedUs = perRecord(m.refWindowed.cpuUs, m.refWindowed.records);
  const extra = one !== undefined && m.subscribers > 1
    ? f2((us - perRecord(one.serverUs, one.records)) / (m.subscribers - 1))
    : "";
  return [
    String(round),
    `taskwire ${m.runtime}`,
    m.buffer === undefined ? String(m.subscribers) : `${m.subscribers} (buffer ${m.buffer})`,
    `${Math.round(m.records / m.seconds)}/s`,
    String(m.records),
    String(m.kernelDrops),
    `${m.delivered} (lost ${m.lost}) in ${Math.round(m.messages / m.subscribers)} messages`,
    f1(us),
    `${f1(perRecord(m.again.us, m.again.records))} (${perThousand(m.again.pageFaults, m.again.records)})`,
    `${f1(perRecord(m.mainUs, m.records))} / ${f1(perRecord(m.readerUs, m.records))} / ${
      f1(perRecord(m.serverUs - m.mainUs - m.readerUs, m.records))
    }`,
    perThousand(m.wakeups, m.records),
    perThousand(m.pageFaults, m.records),
    `${Math.round(m.rssMib[0])} -> ${Math.round(m.rssMib[1])}`,
    `${f1(refUs)} / ${f1(windowedUs)}`,
    `${perThousand(m.ref.wakeups, m.ref.records)} / ${perThousand(m.refWindowed.wakeups, m.refWindowed.records)}`,
    `${f2(us / refUs)} / ${f2(us / windowedUs)}`,
    extra,
  ];
}

function verdicts(all: Measured[][]): string[][] {
  if (!hasRow(all, 1)) return []; // the targets are read against the 1-subscriber row
  const node = (n: number) => all.map((r) => r.find((m) => isNodeRow(m, n))!);
  const deep = all.flat().filter((m) =>
    m.runtime.startsWith("node") && m.subscribers === 1 && m.buffer === DEEP_BUFFER
  );
  const us = (m: Measured) => perRecord(m.serverUs, m.records);
  const one = node(1).map(us);
  const extra = (n: number) => node(n).map((m, i) => (us(m) - one[i]!) / (n - 1));
  const ratio = node(1).map((m) => us(m) / perRecord(m.ref.cpuUs, m.ref.records));
  const windowed = node(1).map((m) => us(m) / perRecord(m.refWindowed.cpuUs, m.refWindowed.records));
  const drops = all.flat().map((m) => m.kernelDrops + m.again.kernelDrops + m.ref.drops + m.refWindowed.drops);
  // A record a subscriber did not get is counted once: as not delivered. Its loss marker says the same record again
  // (until the forty-second session both were added, and the line read twice the records lost).
  const undelivered = all.flat().map((m) =>
    m.subscribers * m.records - m.delivered + (m.subscribers * m.again.records - m.again.delivered)
  );
  const reported = all.flat().map((m) => m.lost + m.again.lost);
  const met = (ok: boolean) => (ok ? "met" : "NOT met");
  const v = (label: string, xs: number[], target: number, fmt: (n: number) => string) => [
    label,
    `${range(xs, fmt)} (target <= ${target})`,
    met(xs.every((x) => x <= target)),
  ];
  return [
    ["target", "measured (range over rounds)", "verdict"],
    v("1. server CPU us/record, Node, 1 subscriber", one, TARGET_US, f1),
    ...(deep.length === 0 ? [] : [[
      `   the same, its buffer ${DEEP_BUFFER} (no target)`,
      range(deep.map(us), f1),
      "reported",
    ]]),
    ...[10, 100].filter((n) => hasRow(all, n)).map((n) =>
      v(`1. us per extra subscriber (${n})`, extra(n), TARGET_EXTRA_US, f2)
    ),
    v("2. ratio to the C reference (Node, 1 subscriber)", ratio, TARGET_RATIO, f2),
    ["   ratio to the C reference waking once a window (no target)", range(windowed, f2), "reported"],
    v("3. kernel drops, every row and its rerun (taskwire and both C)", drops, 0, String),
    [
      "   records not delivered to a subscriber, every row and its rerun",
      range(undelivered, String),
      undelivered.every((x) => x === 0) ? "none" : "some",
    ],
    [
      "   of them reported lost by the stream's loss markers",
      range(reported, String),
      reported.every((x, i) => x === undelivered[i]) ? "all" : "NOT all",
    ],
  ];
}

/** Runs the benchmark; returns the table's rows. */
export async function benchNetlinkIngest(o: IngestOptions): Promise<string[][]> {
  helperPath(); // compiled before any storm, not during one
  const ref = buildRefListener();
  const rounds = o.rounds ?? Number(process.env["BENCH_ROUNDS"] ?? 1);
  const all: Measured[][] = [];
  const rows: string[][] = [[
    "round",
    "server",
    "subscribers",
    "storm rate",
    "records",
    "kernel drops",
    "delivered per subscriber",
    "server CPU us/record",
    "again, right after: us/record (minor page faults per 1k)",
    "of which main / reader / other threads",
    "server wakeups per 1k records",
    "server minor page faults per 1k records",
    "server RSS before -> after, MiB",
    `C ref us/record: wakes per record / ${REF_WINDOW_MS} ms window`,
    "C ref wakeups per 1k records",
    "ratio to C",
    "us per extra subscriber",
  ]];
  for (let r = 1; r <= rounds; r++) {
    const round: Measured[] = [];
    for (const c of CONFIGS) {
      const m = await measure(c, { threads: o.threads, ref });
      round.push(m);
      const one = round.find((x) => x.runtime === m.runtime && x.subscribers === 1 && x.buffer === m.buffer);
      rows.push(row({ ...m, delivered: Math.round(m.delivered / m.subscribers) }, one, r));
    }
    all.push(round);
  }
  const rcvbuf = all[0]?.[0]?.rcvbuf ?? 0;
  rows.push([
    "",
    `storms: ${o.threads} thread exits each (5 x ${
      storms(o.threads, 100)[0]
    } for 100 subscribers); receive buffer ${rcvbuf} B per CPU (the default)`,
    ...Array(14).fill(""),
  ]);
  for (const v of verdicts(all)) rows.push(["", ...v, ...Array(12).fill("")]);
  return rows;
}
