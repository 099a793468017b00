/**
 * The fleet through NATS JetStream (a real nats-server, started here):
 * records/s published with 1 and 3 publishers (taskwire servers in this
 * process, sim sources produced as fast as they drain) and read by 1 and 10
 * consumers (watchFleet in a client process); and the server's CPU per
 * record at a fixed rate, publishing to JetStream beside streaming to one
 * RPC subscriber, in the same run (the sim's own production is in both).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect as netConnect, createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startFleetPublisher } from "../src/fleet/publisher.ts";
import { listenNode } from "../src/runtime/node.ts";
import { createServer, type TaskwireServer } from "../src/server/server.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { type Counter, NO_ADMISSION_LIMITS, produceAt, produceWhileDrained, sleep, startCounter } from "./_shared.ts";

const NATS_SERVER = process.env["NATS_SERVER"] ?? "/usr/sbin/nats-server";

interface Nats {
  readonly url: string;
  readonly pid: number;
  close(): Promise<void>;
}

async function startNats(): Promise<Nats> {
  if (!existsSync(NATS_SERVER)) throw new Error(`needs nats-server (${NATS_SERVER}; Debian package nats-server)`);
  const dir = mkdtempSync(join(tmpdir(), "taskwire-bench-nats-"));
  const port = await new Promise<number>((resolve) => {
    const s = createNetServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const child: ChildProcess = spawn(NATS_SERVER, ["-js", "-sd", dir, "-a", "127.0.0.1", "-p", String(port)], {
    stdio: "ignore",
  });
  for (let i = 0; i < 200; i++) {
    const up = await new Promise<boolean>((r) => {
      const c = netConnect(port, "127.0.0.1").once("connect", () => (c.destroy(), r(true))).once(
        "error",
        () => r(false),
      );
    });
    if (up) break;
    await sleep(25);
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    pid: child.pid!,
    close: async () => {
      child.kill("SIGKILL");
      await sleep(100);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// CPU seconds of another process (utime + stime from /proc/<pid>/stat).
function cpuOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Host {
  readonly server: TaskwireServer;
  readonly source: SimSource;
  readonly url: string;
  /** Events its publisher had acked (0 without one). */
  published(): number;
  close(): Promise<void>;
}

async function startHost(nats: Nats | undefined, name: string, stream: string): Promise<Host> {
  const source = createSimSource({ cpus: 8, exitRate: 0, seed: name.length }) as SimSource;
  const fleet = nats && await startFleetPublisher({
    servers: nats.url,
    stream,
    prefix: stream.toLowerCase(),
    maxBytes: 256 * 1024 ** 2,
  });
  const server = createServer({
    source,
    hostName: name,
    admission: NO_ADMISSION_LIMITS,
    accessLog: false,
    ...(fleet && { fleet }),
  });
  const listening = await listenNode(server, { port: 0 });
  return {
    server,
    source,
    url: listening.url,
    published: () => fleet?.state().published ?? 0,
    close: () => listening.close(),
  };
}

function fleetCounter(nats: Nats, consumers: number, stream: string): Promise<Counter> {
  return startCounter(nats.url, consumers, "read", {
    script: "_fleet-counter.js",
    env: { BENCH_FLEET_STREAM: stream, BENCH_FLEET_PREFIX: stream.toLowerCase() },
  });
}

// Records/s published (acked by JetStream) and read per consumer, producing as fast as the hosts drain.
async function throughput(nats: Nats, publishers: number, consumers: number, ms: number): Promise<string[]> {
  const stream = `BENCH_T_${publishers}_${consumers}`;
  const hosts = await Promise.all(Array.from({ length: publishers }, (_, i) => startHost(nats, `bench-${i}`, stream)));
  const counter = await fleetCounter(nats, consumers, stream);
  const stops = hosts.map((h) => produceWhileDrained(h.source, h.server, 8192));
  await sleep(500);
  const a = await counter.mark(), p0 = totalPublished(hosts), t0 = performance.now();
  await sleep(ms);
  const b = await counter.mark(), p1 = totalPublished(hosts), s = (performance.now() - t0) / 1000;
  for (const stop of stops) stop();
  counter.stop();
  await Promise.all(hosts.map(async (h) => (await h.close(), await h.server.close())));
  return [
    String(publishers),
    String(consumers),
    fmt((p1 - p0) / s),
    fmt((b.events - a.events) / consumers / s),
  ];
}

// Events the hosts' publishers had acked.
function totalPublished(hosts: readonly Host[]): number {
  return hosts.reduce((n, h) => n + h.published(), 0);
}

// Records the fleet listeners produced (each host's fleet listener is its only one here).
function totalProduced(hosts: readonly Host[]): number {
  return hosts.reduce((n, h) => n + h.server.listeners().reduce((m, l) => m + l.produced, 0), 0);
}

// Server CPU (this process) and nats-server CPU per record at `rate` records/s.
async function cost(nats: Nats, mode: "rpc" | "fleet", rate: number, ms: number): Promise<string[]> {
  const stream = `BENCH_COST_${Date.now()}`;
  const host = await startHost(mode === "fleet" ? nats : undefined, "bench-cost", stream);
  const counter = mode === "rpc" ? await startCounter(host.url, 1, "read") : await fleetCounter(nats, 1, stream);
  const stop = produceAt(host.source, rate);
  await sleep(500);
  const c0 = process.cpuUsage(), n0 = cpuOf(nats.pid), r0 = totalProduced([host]), t0 = performance.now();
  await sleep(ms);
  const c1 = process.cpuUsage(c0), n1 = cpuOf(nats.pid), r1 = totalProduced([host]);
  const s = (performance.now() - t0) / 1000;
  stop();
  counter.stop();
  await host.close();
  await host.server.close();
  const records = r1 - r0;
  return [
    mode === "rpc" ? "RPC stream to 1 subscriber" : "JetStream publish (1 consumer)",
    fmt(records / s),
    ((c1.user + c1.system) / records).toFixed(1),
    mode === "fleet" ? (((n1 - n0) * 1e6) / records).toFixed(1) : "-",
  ];
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

/** Both tables. */
export async function benchFleet(
  o: { windowMs: number; rate: number; rounds: number },
): Promise<[string, string[][]][]> {
  const nats = await startNats();
  try {
    const rates: string[][] = [["publishers", "consumers", "records/s published", "records/s read per consumer"]];
    for (const [p, c] of [[1, 1], [1, 10], [3, 1], [3, 10]] as const) {
      rates.push(await throughput(nats, p, c, o.windowMs));
    }
    const costs: string[][] = [["path", "records/s", "server CPU µs/record", "nats-server CPU µs/record"]];
    for (let i = 0; i < o.rounds; i++) {
      costs.push(await cost(nats, "rpc", o.rate, o.windowMs));
      costs.push(await cost(nats, "fleet", o.rate, o.windowMs));
    }
    return [
      ["fleet: records/s through JetStream (sim hosts in one process, produced as fast as they drain)", rates],
      [
        `fleet: server CPU per record at ${fmt(o.rate)} records/s, RPC stream vs JetStream publishing (alternating)`,
        costs,
      ],
    ];
  } finally {
    await nats.close();
  }
}
