/**
 * A real nats-server for the fleet tests: Debian's /usr/sbin/nats-server with
 * JetStream, a temporary store directory and a free loopback port, killed at
 * the end. Restartable on the same port and store (the outage test).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { connect as netConnect, createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  type FleetExitEvent,
  SubscribeExitsResponseSchema,
  watchFleet,
  type WatchFleetOptions,
} from "@taskwire/client";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { type FleetOptions, type FleetPublisher, startFleetPublisher } from "../src/fleet/publisher.ts";
import { eventually, type Running, startServer } from "./helpers.ts";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/nats-core";
import { BATCH_HEADER } from "../src/fleet/_pump.ts";

export const NATS_SERVER = process.env["NATS_SERVER"] ?? "/usr/sbin/nats-server";

/** Whether nats-server is installed (the tests skip, naming it, when not). */
export const haveNatsServer = existsSync(NATS_SERVER);

/** A running nats-server. */
export interface NatsServer {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  /** Kills it (SIGKILL: no clean shutdown), keeping the store. */
  kill(): Promise<void>;
  /** Starts it again on the same port and store. */
  restart(): Promise<void>;
  /** Kills it and removes the store. */
  close(): Promise<void>;
  /**
   * Has it reread its configuration file (SIGHUP; permissions change for connected clients too), resolving once it
   * logs "Reloaded server configuration": until then a client connecting may be refused mid-reload.
   */
  reload(): Promise<void>;
}

/** Starts nats-server -js on a free loopback port; `args` adds flags (e.g. --auth TOKEN, -c FILE). */
export async function startNats(
  args: readonly string[] = [],
  o: { confNamesStore?: boolean } = {},
): Promise<NatsServer> {
  const storeDir = mkdtempSync(join(tmpdir(), "taskwire-nats-"));
  const port = await freePort();
  let child: ChildProcess | undefined;
  // Its stderr, read line by line (so that a full pipe never stalls it): the reloads it has logged, for reload().
  let partial = "", reloaded = 0, reloadError: string | undefined;
  const start = async () => {
    // confNamesStore: the configuration file (-c) names the store itself, as jetstream { store_dir: $NATS_STORE_DIR }:
    // with -sd too, nats-server refuses to reload it ("config reload not supported for jetstream storage dir").
    const js = o.confNamesStore === true ? [] : ["-js", "-sd", storeDir];
    child = spawn(NATS_SERVER, [...js, "-a", "127.0.0.1", "-p", String(port), ...args], {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, NATS_STORE_DIR: storeDir },
    });
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      const lines = (partial + chunk).split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        if (line.includes("Reloaded server configuration")) reloaded++;
        else if (/\[(ERR|FTL)\].*reload/i.test(line)) reloadError = line;
      }
    });
    await waitForPort(port, 10_000);
  };
  const kill = async () => {
    const c = child;
    child = undefined;
    if (c === undefined || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGKILL");
    await exited;
  };
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    kill,
    restart: start,
    reload: async () => {
      const before = reloaded;
      reloadError = undefined;
      child?.kill("SIGHUP");
      await eventually(() => {
        if (reloadError !== undefined) throw new Error(`nats-server did not reload: ${reloadError}`);
        return reloaded > before;
      }, 10_000);
    },
    close: async () => {
      await kill();
      rmSync(storeDir, { recursive: true, force: true });
    },
  };
}

// TASKWIRE_TEST_NATS_PORTS=LOW-HIGH keeps the nats-servers within a range (a shared machine's share of ports);
// unset, any free port.
const PORT_RANGE = /^(\d+)-(\d+)$/.exec(process.env["TASKWIRE_TEST_NATS_PORTS"] ?? "");

async function freePort(): Promise<number> {
  if (PORT_RANGE === null) return await listenOn(0);
  const [lo, hi] = [Number(PORT_RANGE[1]), Number(PORT_RANGE[2])];
  const start = lo + Math.floor(Math.random() * (hi - lo + 1));
  for (let i = 0; i <= hi - lo; i++) {
    const port = lo + ((start - lo + i) % (hi - lo + 1));
    const ok = await listenOn(port).then(() => true, () => false);
    if (ok) return port;
  }
  throw new Error(`no free port in TASKWIRE_TEST_NATS_PORTS ${lo}-${hi}`);
}

function listenOn(want: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once("error", reject);
    s.listen(want, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, ms: number): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = netConnect(port, "127.0.0.1");
      sock.once("connect", () => (sock.destroy(), resolve(true)));
      sock.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nats-server did not listen on ${port} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A fleet message as a publisher would send it: exits of CPU 0 with these seqs, and `pad` bytes of an unknown field. */
export const exitMsg = (seqs: readonly bigint[], pad = 0): Uint8Array => {
  const body = toBinary(
    SubscribeExitsResponseSchema,
    create(SubscribeExitsResponseSchema, {
      events: seqs.map((seq) => ({
        seq,
        cpu: 0,
        event: {
          case: "exit" as const,
          value: { pid: 4242, tgid: 4242, pidStats: { version: 16, acComm: "evil", acPid: 4242 } },
        },
      })),
    }),
  );
  if (pad === 0) return body;
  // An unknown field 15 (length-delimited) of `pad` bytes: decoders keep it, a held event must not.
  const len: number[] = [];
  for (let n = pad;; n >>>= 7) {
    if (n < 128) len.push(n);
    else len.push((n & 127) | 128);
    if (n < 128) break;
  }
  const out = new Uint8Array(body.length + 1 + len.length + pad);
  out.set(body);
  out.set([0x7a, ...len], body.length);
  return out;
};
/**
 * Makes the stream `name` over `<prefix>.*.exits.*` and returns a publisher of crafted messages as host h's run r1
 * sends them: one CPU's message with these seqs, naming its batch ("<first>-<last>").
 */
export async function craftedStream(
  nc: NatsConnection,
  name: string,
  prefix: string,
): Promise<(cpu: number, seqs: number[], batch: string) => Promise<unknown>> {
  await (await jetstreamManager(nc)).streams.add({ name, subjects: [`${prefix}.*.exits.*`] });
  const js = jetstream(nc);
  return (cpu, seqs, batch) => {
    const h = headers();
    h.set(BATCH_HEADER, batch);
    return js.publish(`${prefix}.h.exits.${cpu}`, exitMsg(seqs.map(BigInt)), { headers: h, msgID: `h:r1:${seqs[0]}` });
  };
}

/** Per host: seqs covered (exits and loss ranges), in arrival order. */
export interface HostTally {
  received: number;
  lost: number;
  /** The next seq expected; a seq out of order or twice is recorded in `errors`. */
  next: number;
  errors: string[];
}

/** Tallies events per host, checking each seq comes once and in order. */
export function tally(events: readonly FleetExitEvent[]): Map<string, HostTally> {
  const hosts = new Map<string, HostTally>();
  for (const ev of events) {
    let t = hosts.get(ev.host);
    if (t === undefined) hosts.set(ev.host, t = { received: 0, lost: 0, next: 1, errors: [] });
    const [first, last] = ev.event.case === "lost"
      ? [Number(ev.event.value.firstSeq), Number(ev.event.value.lastSeq)]
      : [Number(ev.seq), Number(ev.seq)];
    if (first !== t.next && t.errors.length < 5) t.errors.push(`seq ${first} after ${t.next - 1}`);
    t.next = last + 1;
    if (ev.event.case === "lost") t.lost += last - first + 1;
    else t.received++;
  }
  return hosts;
}

/**
 * `host`'s tally once its events cover `produced` seqs (received + lost), counted rather than read from the last
 * seq seen: should a seq come out of order, the tally's `errors` say so.
 */
export async function tallied(
  events: readonly FleetExitEvent[],
  host: string,
  produced: number,
  ms = 20_000,
): Promise<HostTally> {
  await eventually(() => {
    const t = tally(events).get(host);
    return t !== undefined && t.received + t.lost >= produced;
  }, ms);
  return tally(events).get(host)!;
}

/** A sim server publishing into NATS as `host`. */
export async function fleetServer(
  nats: string,
  host: string,
  o: { exitRate?: number; fleet?: Partial<FleetOptions> } = {},
): Promise<Running & { fleet: FleetPublisher }> {
  const fleet = await startFleetPublisher({ servers: nats, ...o.fleet });
  const running = await startServer(createSimSource({ cpus: 4, exitRate: o.exitRate ?? 2000, seed: host.length }), {}, {
    hostName: host,
    fleet,
    accessLog: false,
  });
  return { ...running, fleet };
}

/** Collects watchFleet's events until stopped. */
export function collectFleet(
  o: WatchFleetOptions,
): { events: FleetExitEvent[]; readonly error: unknown; stop(): Promise<void> } {
  const ctl = new AbortController();
  const events: FleetExitEvent[] = [];
  let error: unknown;
  const done = (async () => {
    for await (const ev of watchFleet({ ...o, signal: ctl.signal })) events.push(ev);
  })().catch((err: unknown) => (error = err));
  return {
    events,
    get error() {
      return error;
    },
    stop: async () => {
      ctl.abort();
      await done;
      if (error !== undefined) throw error;
    },
  };
}

/** Stops a fleet server: its RPC listener, then the server (which publishes what its publisher queued). */
export async function stopFleetServer(s: Running): Promise<void> {
  await s.close();
  await s.server.close();
}
