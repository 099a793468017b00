/**
 * End to end over loopback: the sim source at the highest rate the stream
 * takes, events/s received by 1 and by 100 client streams (in a separate
 * process), beside the ceiling (a bare server streaming pre-encoded
 * messages) in the same run; RSS with 1,000 subscribers that never read; a
 * fast subscriber's rate beside them; latency at fixed rates.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createInterface } from "node:readline";
import type { ExitRecord } from "../src/kernel/exit-record.ts";
import { listenNode, type Listening } from "../src/server/listen-node.ts";
import { createServer, type TaskwireServer } from "../src/server/server.ts";
import { SLOT } from "../src/kernel/stats-vector.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { startBareServer } from "./_bare-latency.ts";
import { startCeiling, startGrpcCeiling } from "./_ceiling.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Counter {
  mark(): Promise<{ events: number; cpuUs: number; latencies: number[] }>;
  stop(): void;
}

async function startCounter(url: string, streams: number, mode: "read" | "idle" | "latency", env: Record<string, string> = {}, script = "_stream-counter.js"): Promise<Counter> {
  const proc: ChildProcessWithoutNullStreams = spawn(process.execPath, [new URL(`./${script}`, import.meta.url).pathname, url, String(streams), "0-7", mode], { env: { ...process.env, ...env } });
  const lines = createInterface({ input: proc.stdout });
  const waiting: ((line: string) => void)[] = [];
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  lines.on("line", (line) => (line === "ready" ? ready() : waiting.shift()?.(line)));
  await isReady;
  return {
    mark: () => new Promise((resolve) => {
      waiting.push((line) => resolve(JSON.parse(line)));
      proc.stdin.write("mark\n");
    }),
    stop: () => proc.stdin.end(),
  };
}

/** Events/s a counter receives over `ms`, and the client process's CPU per event. */
async function measure(c: Counter, ms: number): Promise<{ rate: number; clientUs: number }> {
  const a = await c.mark(), t0 = performance.now();
  await sleep(ms);
  const b = await c.mark();
  return { rate: (b.events - a.events) / ((performance.now() - t0) / 1000), clientUs: (b.cpuUs - a.cpuUs) / Math.max(1, b.events - a.events) };
}

async function rate(c: Counter, ms: number): Promise<number> {
  return (await measure(c, ms)).rate;
}

interface Taskwire {
  source: SimSource;
  server: TaskwireServer;
  listening: Listening;
  stopProducer(): void;
}

// Produces exits as fast as the listeners drain them: a batch whenever the fullest queue is under half full.
async function startTaskwire(limits = {}): Promise<Taskwire> {
  const source = createSimSource({ cpus: 8, exitRate: 0, seed: 9 }) as SimSource;
  const server = createServer({ source, limits });
  const listening = await listenNode(server, { port: 0 });
  let running = true;
  const tick = () => {
    if (!running) return;
    let deepest = 0, capacity = Infinity;
    for (const l of server.registry.listeners()) {
      if (l.queue.depth > deepest) deepest = l.queue.depth;
      capacity = Math.min(capacity, l.queue.capacity);
    }
    if (deepest < capacity / 2) source.kernel.exitNow(256);
    setImmediate(tick);
  };
  setImmediate(tick);
  return { source, server, listening, stopProducer: () => (running = false) };
}

function sampleRecords(n: number): ExitRecord[] {
  const source = createSimSource({ cpus: 8, exitRate: 0, seed: 9 }) as SimSource;
  const out: ExitRecord[] = [];
  source.kernel.onRecord = (r) => out.push(r);
  source.kernel.watch([0, 1, 2, 3, 4, 5, 6, 7], true);
  source.kernel.exitNow(n);
  return out;
}

const PROTOCOLS = [
  { name: "Connect, HTTP/1.1", env: {}, ceiling: startCeiling },
  { name: "gRPC, h2c", env: { BENCH_PROTOCOL: "grpc" }, ceiling: startGrpcCeiling },
] as const;

async function throughputRows(window: number): Promise<string[][]> {
  const rows: string[][] = [["protocol", "stream", "clients", "events/s received", "vs ceiling", "client CPU / event"]];
  const records = sampleRecords(256);
  for (const p of PROTOCOLS) {
    const ceilingRate: Record<number, number> = {};
    const ceiling = await p.ceiling(records, 256);
    for (const n of [1, 100]) {
      const c = await startCounter(ceiling.url, n, "read", p.env);
      const m = await measure(c, window);
      ceilingRate[n] = m.rate;
      c.stop();
      rows.push([p.name, "ceiling: bare server, pre-encoded messages", String(n), String(Math.round(m.rate)), "100%", `${m.clientUs.toFixed(1)} us`]);
    }
    await ceiling.close();
    for (const n of [1, 100]) {
      const tw = await startTaskwire();
      const c = await startCounter(tw.listening.url, n, "read", p.env);
      const { rate: r, clientUs } = await measure(c, window);
      c.stop();
      tw.stopProducer();
      await tw.listening.close();
      rows.push([p.name, "taskwire: sim source -> listener -> stream", String(n), String(Math.round(r)), `${Math.round((100 * r) / ceilingRate[n]!)}%`, `${clientUs.toFixed(1)} us`]);
    }
  }
  return rows;
}

function rss(): number {
  return process.memoryUsage().rss / (1 << 20);
}

async function memoryRows(window: number): Promise<string[][]> {
  const buffer = 256, perSecond = 5000;
  const source = createSimSource({ cpus: 8, exitRate: 0, seed: 9 }) as SimSource;
  const server = createServer({ source, limits: { defaultBuffer: buffer } });
  const listening = await listenNode(server, { port: 0 });
  const stop = produceAt(source, perSecond);
  const fastAlone = await startCounter(listening.url, 1, "read");
  await sleep(500);
  const rateAlone = await rate(fastAlone, window);
  fastAlone.stop();
  await sleep(500);
  const base = rss();
  const idle = await startCounter(listening.url, 1000, "idle");
  const fast = await startCounter(listening.url, 1, "read");
  await sleep(window); // let the idle subscribers' transports and queues fill
  const rateBeside = await rate(fast, window);
  const loaded = rss();
  let queued = 0, dropped = 0;
  for (const l of server.registry.listeners()) {
    queued += l.queue.depth;
    dropped += l.lost["subscriber-overflow"];
  }
  idle.stop();
  fast.stop();
  stop();
  await listening.close();
  return [
    ["case (sim producing 5,000 exits/s on 8 CPUs)", "server RSS", "fast subscriber events/s"],
    ["no idle subscribers", `${base.toFixed(0)} MiB`, String(Math.round(rateAlone))],
    [`1,000 subscribers that never read (queues of ${buffer} events)`, `${loaded.toFixed(0)} MiB (+${(loaded - base).toFixed(0)})`, `${Math.round(rateBeside)} (${Math.round((100 * rateBeside) / rateAlone)}%)`],
    ["the idle subscribers' queues", `${queued} events queued (bound ${1000 * buffer}), ${dropped} dropped and reported as lost`, ""],
  ];
}

/**
 * Produces `perSecond` exits per second in 1 ms ticks until stopped. A tick
 * that comes late makes up at most 10 ms of backlog (the rest is skipped), so
 * a stalled event loop does not turn into one huge burst.
 */
function produceAt(source: SimSource, perSecond: number): () => void {
  let last = performance.now();
  let carry = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    carry += (Math.min(now - last, 10) / 1000) * perSecond;
    last = now;
    const n = Math.floor(carry);
    carry -= n;
    if (n > 0) source.kernel.exitNow(n);
  }, 1);
  return () => clearInterval(timer);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function latencyRow(what: string, perSecond: number, latencies: number[]): string[] {
  const sorted = latencies.sort((a, b) => a - b);
  const ms = (us: number) => `${(us / 1000).toFixed(2)} ms`;
  return [what, `${perSecond}/s`, String(sorted.length), ms(percentile(sorted, 50)), ms(percentile(sorted, 99)), ms(sorted[sorted.length - 1]!)];
}

// Steady state: the first second (both processes' code still being optimized) is not counted.
async function steadyWindow(c: Counter, ms: number, stop: () => void): Promise<number[]> {
  await sleep(1000);
  await c.mark();
  await sleep(ms);
  stop();
  await sleep(200);
  const { latencies } = await c.mark();
  c.stop();
  return latencies;
}

async function taskwireLatency(perSecond: number, ms: number): Promise<number[]> {
  const source = createSimSource({ cpus: 8, exitRate: 0, seed: 9 }) as SimSource;
  const server = createServer({ source });
  const listening = await listenNode(server, { port: 0 });
  // Stamp each record with the producer's clock (µs) in ac_btime64 as it enters the listener table
  // (in its stats vector: the sim's records are encoded from that).
  const deliver = source.kernel.onRecord!;
  source.kernel.onRecord = (r) => {
    const now = Math.round((performance.timeOrigin + performance.now()) * 1000);
    if (r.pidVector !== undefined) r.pidVector.values[SLOT.acBtime64] = now;
    else r.pidStats.acBtime64 = BigInt(now);
    deliver(r);
  };
  const c = await startCounter(listening.url, 1, "latency");
  const latencies = await steadyWindow(c, ms, produceAt(source, perSecond));
  await listening.close();
  return latencies;
}

async function bareLatency(perSecond: number, ms: number): Promise<number[]> {
  const bare = await startBareServer(perSecond);
  const latencies = await steadyWindow(await startCounter(bare.url, 1, "latency", {}, "_bare-latency.js"), ms, () => {});
  await bare.close();
  return latencies;
}

async function latencyRows(ms: number): Promise<string[][]> {
  const rows = [["stream", "rate", "events", "p50", "p99", "max"]];
  for (const perSecond of [1000, 10_000]) {
    rows.push(latencyRow("baseline: bare node:http server and client, one chunk per event", perSecond, await bareLatency(perSecond, ms)));
    rows.push(latencyRow("taskwire: sim -> listener -> Connect stream -> SDK", perSecond, await taskwireLatency(perSecond, ms)));
  }
  return rows;
}

/** All end-to-end tables. */
export async function benchE2e(window = 3000): Promise<[string, string[][]][]> {
  return [
    ["end to end over loopback: events/s", await throughputRows(window)],
    ["latency: produced -> received by a client process (same clock)", await latencyRows(window)],
    ["memory: subscribers that never read", await memoryRows(window)],
  ];
}
