/**
 * What observability costs: stream events/s (one SubscribeExits stream from a
 * client process, the producer of auth.ts) and unary calls/s (GetInfo, 16 in
 * flight) against the same server with metrics and the access log off, with
 * metrics only, and with both, in alternating rounds of the same run. Both on
 * is the production setting: metrics counted, /metrics scraped every second
 * (more often than Prometheus' default of 15 s or 1 min), and access records
 * formatted as JSON lines into a sink that drops them (writing them to a
 * terminal would measure the terminal).
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { resetSync } from "@logtape/logtape";
import { DEFAULT_LIMITS } from "../src/core/limits.ts";
import { configureLogging } from "../src/log/logger.ts";
import { listenNode } from "../src/runtime/node.ts";
import { createServer } from "../src/server/server.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { NO_ADMISSION_LIMITS, produceWhileDrained, sleep, startCounter } from "./_shared.ts";

interface Setting {
  readonly name: string;
  readonly metrics: boolean;
  readonly accessLog: boolean;
}

const SETTINGS: readonly Setting[] = [
  { name: "off", metrics: false, accessLog: false },
  { name: "metrics", metrics: true, accessLog: false },
  { name: "metrics + access log", metrics: true, accessLog: true },
];

async function withServer<T>(s: Setting, produce: boolean, run: (url: string) => Promise<T>): Promise<T> {
  const source = createSimSource({ cpus: 8, exitRate: 0, seed: 9 }) as SimSource;
  const server = createServer({ source, admission: NO_ADMISSION_LIMITS, metrics: s.metrics, accessLog: s.accessLog });
  const listening = await listenNode(server, { port: 0 });
  const stopProducing = produce ? produceWhileDrained(source, server, DEFAULT_LIMITS.defaultBuffer) : () => {};
  const scraper = s.metrics
    ? setInterval(() => void fetch(`${listening.url}/metrics`).then((r) => r.text()), 1000)
    : undefined;
  try {
    return await run(listening.url);
  } finally {
    stopProducing();
    clearInterval(scraper);
    await listening.close();
  }
}

async function streamRate(url: string, ms: number): Promise<number> {
  const c = await startCounter(url, 1, "read");
  await sleep(300);
  const a = await c.mark(), t0 = performance.now();
  await sleep(ms);
  const b = await c.mark();
  c.stop();
  return (b.events - a.events) / ((performance.now() - t0) / 1000);
}

async function unaryRate(url: string, ms: number): Promise<number> {
  const script = new URL("./_unary-caller.js", import.meta.url).pathname;
  const { stdout } = await promisify(execFile)(process.execPath, [script, url, "16", String(ms)]);
  return JSON.parse(stdout).perSecond as number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Rows: per measure, the median of each setting over `rounds` alternating rounds, and its overhead against "off". */
export async function benchObservability(o: { rounds: number; windowMs: number }): Promise<string[][]> {
  let lines = 0;
  configureLogging({ level: "info", format: "json", write: () => void lines++ });
  try {
    return await alternate(o, () => lines);
  } finally {
    resetSync(); // LogTape is process-wide: the benchmarks after this one run unconfigured again
  }
}

async function alternate(o: { rounds: number; windowMs: number }, lines: () => number): Promise<string[][]> {
  const measures = [
    ["stream events/s (one SubscribeExits, Connect/HTTP/1.1)", streamRate, true],
    ["unary GetInfo calls/s (16 in flight, Connect/HTTP/1.1)", unaryRate, false],
  ] as const;
  const rows = [["measure", ...SETTINGS.map((s) => `${s.name} (median, overhead)`), "rounds (per setting, in order)"]];
  for (const [name, measure, produce] of measures) {
    const runs: number[][] = SETTINGS.map(() => []);
    for (let r = 0; r < o.rounds; r++) {
      for (const [i, s] of SETTINGS.entries()) {
        runs[i]!.push(await withServer(s, produce, (url) => measure(url, o.windowMs)));
      }
    }
    const base = median(runs[0]!);
    const cell = (xs: number[]) => {
      const m = median(xs);
      return xs === runs[0] ? String(Math.round(m)) : `${Math.round(m)} (${(((base - m) / base) * 100).toFixed(1)}%)`;
    };
    rows.push([name, ...runs.map(cell), runs.map((xs) => xs.map(Math.round).join(", ")).join(" / ")]);
  }
  rows.push(["access records formatted (all rounds)", "", "", String(lines()), ""]);
  return rows;
}
