/**
 * End to end over loopback: the sim source at the highest rate the stream
 * takes, events/s received by 1 and by 100 client streams (in a separate
 * process), beside the ceiling (a bare server streaming pre-encoded
 * messages) in the same run; RSS with 1,000 subscribers that never read; a
 * fast subscriber's rate beside them. (Latency: bench/latency.ts.)
 */
import { type Listening, listenNode } from "../src/runtime/node.ts";
import { DEFAULT_LIMITS, type Limits } from "../src/core/limits.ts";
import { createServer, type TaskwireServer } from "../src/server/server.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { startCeiling, startGrpcCeiling } from "./_ceiling.ts";
import {
  type Counter,
  NO_ADMISSION_LIMITS,
  NO_PRINCIPAL_LISTENER_LIMIT,
  OBSERVABILITY,
  produceAt,
  produceWhileDrained,
  sampleRecords,
  sleep,
  startCounter,
} from "./_shared.ts";

/** Events/s a counter receives over `ms`, and the client process's CPU per event. */
async function measure(c: Counter, ms: number): Promise<{ rate: number; clientUs: number }> {
  const a = await c.mark(), t0 = performance.now();
  await sleep(ms);
  const b = await c.mark();
  return {
    rate: (b.events - a.events) / ((performance.now() - t0) / 1000),
    clientUs: (b.cpuUs - a.cpuUs) / Math.max(1, b.events - a.events),
  };
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
async function startTaskwire(limits: Partial<Limits> = {}): Promise<Taskwire> {
  const source = createSimSource({ cpus: 8, exitRate: 0, seed: 9 }) as SimSource;
  const server = createServer({
    source,
    limits: { ...NO_PRINCIPAL_LISTENER_LIMIT, ...limits },
    admission: NO_ADMISSION_LIMITS,
    ...OBSERVABILITY,
  });
  const listening = await listenNode(server, { port: 0 });
  const stopProducer = produceWhileDrained(source, server, limits.defaultBuffer ?? DEFAULT_LIMITS.defaultBuffer);
  return { source, server, listening, stopProducer };
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
      const c = await startCounter(ceiling.url, n, "read", { env: p.env });
      const m = await measure(c, window);
      ceilingRate[n] = m.rate;
      c.stop();
      rows.push([
        p.name,
        "ceiling: bare server, pre-encoded messages",
        String(n),
        String(Math.round(m.rate)),
        "100%",
        `${m.clientUs.toFixed(1)} us`,
      ]);
    }
    await ceiling.close();
    for (const n of [1, 100]) {
      const tw = await startTaskwire();
      const c = await startCounter(tw.listening.url, n, "read", { env: p.env });
      const { rate: r, clientUs } = await measure(c, window);
      c.stop();
      tw.stopProducer();
      await tw.listening.close();
      rows.push([
        p.name,
        "taskwire: sim source -> listener -> stream",
        String(n),
        String(Math.round(r)),
        `${Math.round((100 * r) / ceilingRate[n]!)}%`,
        `${clientUs.toFixed(1)} us`,
      ]);
    }
  }
  return rows;
}

function rss(): number {
  return process.memoryUsage().rss / (1 << 20);
}

function queuedAndDropped(server: TaskwireServer): { queued: number; dropped: number } {
  const stats = server.stats();
  return { queued: stats.queued, dropped: stats.lost["subscriber-overflow"] };
}

/**
 * Starts `n` subscribers that never read and waits until their queues are
 * full (so their streams are blocked on their transports), at most `maxMs`.
 * Returns them, how long that took, and the fast subscriber's events/s meanwhile.
 */
async function stallMany(
  url: string,
  server: TaskwireServer,
  o: { n: number; buffer: number; fast: Counter; maxMs: number },
): Promise<{ idle: Counter; ms: number; rate: number }> {
  const t0 = performance.now(), a = await o.fast.mark();
  const idle = await startCounter(url, o.n, "idle");
  while (queuedAndDropped(server).queued < o.n * o.buffer && performance.now() - t0 < o.maxMs) await sleep(100);
  const b = await o.fast.mark(), ms = performance.now() - t0;
  return { idle, ms, rate: (b.events - a.events) / (ms / 1000) };
}

// Each idle listener is charged ~1 MiB against the memory budget (its queue, its in-flight batch and its
// retention of 256 events each): the default 1 GiB refused the last of the 1,000 idle subscribers.
const MEMORY_BUDGET = 2 * 1024 ** 3;

async function memoryRows(window: number): Promise<string[][]> {
  const buffer = 256, perSecond = 5000;
  const source = createSimSource({ cpus: 8, exitRate: 0, seed: 9 }) as SimSource;
  const server = createServer({
    source,
    limits: { ...NO_PRINCIPAL_LISTENER_LIMIT, defaultBuffer: buffer },
    memoryBudget: MEMORY_BUDGET,
    admission: NO_ADMISSION_LIMITS,
    ...OBSERVABILITY,
  });
  const listening = await listenNode(server, { port: 0 });
  // Late ticks make up the whole backlog, as both real sources do (the sim
  // source runs virtual time up to now; the kernel keeps records in the
  // netlink socket until the reader comes): with the latency rows' 10 ms cap,
  // the long turns of the idle streams' first writes would silently lower
  // the rate being measured (one run in two here).
  const stop = produceAt(source, perSecond, 1000);
  const fastAlone = await startCounter(listening.url, 1, "read");
  await sleep(500);
  const rateAlone = await rate(fastAlone, window);
  fastAlone.stop();
  await sleep(500);
  const base = rss();
  const fast = await startCounter(listening.url, 1, "read");
  // Until the idle subscribers' transports are full their streams keep writing (~400 KB each).
  const { idle, ...fill } = await stallMany(listening.url, server, { n: 1000, buffer, fast, maxMs: 30_000 });
  await sleep(1000); // the last batches the idle streams took are still being written
  const rateBeside = await rate(fast, window);
  const loaded = rss();
  const { queued, dropped } = queuedAndDropped(server);
  idle.stop();
  fast.stop();
  stop();
  await listening.close();
  const share = (r: number) => `${Math.round(r)} (${Math.round((100 * r) / rateAlone)}%)`;
  return [
    ["case (sim producing 5,000 exits/s on 8 CPUs; memory budget 2 GiB)", "server RSS", "fast subscriber events/s"],
    ["no idle subscribers", `${base.toFixed(0)} MiB`, String(Math.round(rateAlone))],
    [
      `1,000 subscribers that never read, while they connect and their transports fill (${
        (fill.ms / 1000).toFixed(1)
      } s)`,
      "",
      share(fill.rate),
    ],
    [
      `1,000 subscribers that never read, after that (queues of ${buffer} events)`,
      `${loaded.toFixed(0)} MiB (+${(loaded - base).toFixed(0)})`,
      share(rateBeside),
    ],
    [
      "the idle subscribers' queues",
      `${queued} events queued (bound ${1000 * buffer}), ${dropped} dropped and reported as lost`,
      "",
    ],
  ];
}

/** All end-to-end tables, or only those named in BENCH_E2E (comma-separated: throughput, memory). */
export async function benchE2e(window = 3000): Promise<[string, string[][]][]> {
  const only = process.env["BENCH_E2E"]?.split(",");
  const tables: [string, string, () => Promise<string[][]>][] = [
    ["throughput", "end to end over loopback: events/s", () => throughputRows(window)],
    ["memory", "memory: subscribers that never read", () => memoryRows(window)],
  ];
  const out: [string, string[][]][] = [];
  for (const [name, title, rows] of tables) {
    if (only === undefined || only.includes(name)) out.push([title, await rows()]);
  }
  return out;
}
