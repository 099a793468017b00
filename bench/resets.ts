/**
 * HTTP/2 rapid reset (`npm run bench resets`): a `taskwire serve` process of its own per row (the sim at 2,000
 * exits/s), a kept-alive HTTP/1.1 connection asking /healthz every 20 ms for 6 s, and an attacker process
 * flooding it from loopback (bench/_reset-flood.ts) 0.3 s into those 6 s, for 5 s. The first row has no attacker:
 * the baseline the others are read against, in the same run. The server's own figures come from /metrics 2.5 s
 * after the flood (an address past its reset limit has its new connections refused for 2 s). The last two rows
 * send requests that are never reset: those past the calls a caller may have under way are refused (REFUSED_STREAM,
 * which counts as a reset too), and they once crashed the process (runtime/_h2-end.ts). BENCH_RESETS_BIN runs
 * another build's server instead, for a before-and-after in the same hour; BENCH_RESETS_ROWS some rows only.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { Agent, get } from "node:http";
import { createServer as createNetServer } from "node:net";
import { fileURLToPath } from "node:url";
import { startChild } from "./_child.ts";
import { sleep } from "./_shared.ts";

interface Row {
  readonly label: string;
  /** _reset-flood.ts's arguments after the port, or none for the baseline. */
  readonly flood?: readonly [mode: string, clients: number, streams: number];
}

const ROWS: Row[] = [
  { label: "no attacker (baseline)" },
  { label: "1 connection, 700 resets in its first read, reconnecting", flood: ["first-read", 1, 700] },
  { label: "200 connections, 90 resets/s each (under the per-connection limit)", flood: ["steady", 200, 90] },
  { label: "the same 200, reconnecting as soon as closed", flood: ["reconnect", 200, 90] },
  { label: "8 connections, 700 resets in each first read, reconnecting", flood: ["first-read", 8, 700] },
  { label: "50 connections, 700 resets in each first read, reconnecting", flood: ["first-read", 50, 700] },
  { label: "200 connections, 200 GetInfo/s each (no reset)", flood: ["requests", 200, 200] },
  { label: "200 connections, 100 GetInfo (no reset) in each first write, reconnecting", flood: ["headers", 200, 100] },
];

const PROBE_MS = 6000;

// BENCH_RESETS_ROWS: the rows to run, by number (0 the baseline), as "0,6"; all of them without it.
function chosen(_row: Row, i: number): boolean {
  const only = process.env["BENCH_RESETS_ROWS"];
  return only === undefined || only.split(",").map(Number).includes(i);
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createNetServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function startServer(port: number): Promise<ChildProcess> {
  // BENCH_RESETS_BIN: another build's bin/taskwire.js, to measure it with the same attacks (before and after).
  const bin = process.env["BENCH_RESETS_BIN"] ?? fileURLToPath(new URL("../../bin/taskwire.js", import.meta.url));
  const args = [bin, "serve", "--source", "sim", "--sim-exit-rate", "2000", "--port", String(port)];
  const child = spawn(process.execPath, args, { stdio: "ignore" });
  for (let i = 0; i < 100; i++) {
    if (await healthz(port, new Agent()).then(() => true, () => false)) return child;
    await sleep(100);
  }
  child.kill("SIGKILL");
  throw new Error(`taskwire serve did not answer /healthz on port ${port} within 10 s`);
}

function healthz(port: number, agent: Agent): Promise<number> {
  const t = performance.now();
  return new Promise((resolve, reject) => {
    get({ host: "127.0.0.1", port, path: "/healthz", agent }, (res) => {
      res.resume();
      res.on("end", () => resolve(performance.now() - t));
    }).on("error", reject);
  });
}

// /healthz on one kept connection every 20 ms for PROBE_MS: how many answered, how many failed (the probe goes on,
// on a new connection: loopback's connections may be refused for a while, or its own closed), the slowest answer,
// and the first failure's message.
async function probe(port: number): Promise<{ answers: number; failed: number; slowestMs: number; error?: string }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const end = performance.now() + PROBE_MS;
  let answers = 0, failed = 0, slowestMs = 0;
  let error: string | undefined;
  while (performance.now() < end) {
    try {
      slowestMs = Math.max(slowestMs, await healthz(port, agent));
      answers++;
    } catch (err) {
      failed++;
      error ??= (err as Error).message;
    }
    await sleep(20);
  }
  agent.destroy();
  return error === undefined ? { answers, failed, slowestMs } : { answers, failed, slowestMs, error };
}

async function metrics(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  return await res.text();
}

function metric(text: string, name: string): number {
  const line = text.split("\n").find((l) => l.startsWith(name + " ") || l.startsWith(name + "{"));
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(" ") + 1));
}

async function runRow(row: Row): Promise<string[]> {
  const port = await freePort();
  const server = await startServer(port);
  try {
    const probing = probe(port);
    await sleep(300);
    const flood = row.flood && await startChild(new URL("./_reset-flood.js", import.meta.url), [
      String(port),
      row.flood[0],
      String(row.flood[1]),
      String(row.flood[2]),
      "5",
    ]);
    const attack = flood ? await flood.finish<{ sent: number; connections: number }>() : undefined;
    const seen = await probing;
    await sleep(2500);
    const answers = seen.failed === 0
      ? String(seen.answers)
      : `${seen.answers}, ${seen.failed} failed (first: ${seen.error})`;
    const sent = attack ? `${attack.sent.toLocaleString("en")} / ${attack.connections.toLocaleString("en")}` : "-";
    // A server that died under the attack (another build's, BENCH_RESETS_BIN) is a row of its own, not the end of the run.
    const died = server.signalCode ?? server.exitCode;
    if (died !== null) {
      return [row.label, sent, answers, seen.slowestMs.toFixed(0), `the server died (${died})`, "", "", ""];
    }
    const m = await metrics(port);
    const closed = (limit: string) => metric(m, `taskwire_connections_refused_total{limit="${limit}"}`);
    return [
      row.label,
      sent,
      answers,
      seen.slowestMs.toFixed(0),
      (metric(m, "nodejs_eventloop_lag_max_seconds") * 1000).toFixed(0),
      String(closed("h2_max_resets_per_second")),
      String(closed("h2_max_resets_per_second_per_address")),
      (metric(m, "process_resident_memory_bytes") / 2 ** 20).toFixed(0),
    ];
  } finally {
    server.kill("SIGKILL");
  }
}

/** One table: each row a fresh server, the attack beside the /healthz probe. */
export async function benchResets(rounds: number): Promise<string[][]> {
  const rows = [[
    "attack (from loopback, 5 s)",
    "streams sent / connections",
    "/healthz answers in 6 s",
    "slowest /healthz, ms",
    "event-loop lag max, ms",
    "closed: per connection",
    "closed or refused: per address",
    "RSS after, MiB",
  ]];
  for (let round = 0; round < rounds; round++) {
    for (const row of ROWS.filter(chosen)) rows.push(await runRow(row));
  }
  return rows;
}
