/** Shared test helpers: a real server on an ephemeral loopback port, and an SDK client for it. */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createTaskwireClient,
  type ExitEvent,
  type TaskwireClient,
  watchExits,
  type WatchExitsOptions,
} from "@taskwire/client";
import type { Authenticator } from "../src/auth/authenticator.ts";
import { UnauthenticatedError } from "../src/auth/errors.ts";
import { ROLES } from "../src/core/principal.ts";
import { type Listening, listenNode } from "../src/runtime/node.ts";
import { createServer, type ServerOptions, type TaskwireServer } from "../src/server/server.ts";
import type { Limits } from "../src/core/limits.ts";
import type { ExitFeed, ExitSink } from "../src/core/registry.ts";
import type { Listener } from "../src/core/listener.ts";
import type { CpuRecord } from "../src/core/event-queue.ts";
import type { StreamItem } from "../src/core/retention.ts";
import type { TaskstatsSource } from "../src/sources/source.ts";

export interface Running {
  readonly server: TaskwireServer;
  readonly listening: Listening;
  readonly client: TaskwireClient;
  readonly url: string;
  close(): Promise<void>;
}

export async function startServer(
  source: TaskstatsSource,
  limits: Partial<Limits> = {},
  extra: Omit<ServerOptions, "source" | "limits"> = {},
): Promise<Running> {
  const server = createServer({ source, limits, ...extra });
  const listening = await listenNode(server, { host: "127.0.0.1", port: 0 });
  return {
    server,
    listening,
    url: listening.url,
    client: createTaskwireClient(listening.url),
    close: () => listening.close(),
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` until it returns true or `ms` pass. */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`condition not met within ${ms} ms`);
    await sleep(20);
  }
}

/** A running subscription that collects its events until stopped. */
export interface Collecting {
  readonly events: ExitEvent[];
  /** Ends the stream and waits for the loop to finish. */
  stop(): Promise<void>;
}

/** Subscribes with watchExits and resolves once the server has confirmed the subscription. */
export async function collectExits(
  client: TaskwireClient,
  options: Omit<WatchExitsOptions, "signal" | "onSubscribed">,
): Promise<Collecting> {
  const ctl = new AbortController();
  const events: ExitEvent[] = [];
  let subscribed!: () => void;
  const ready = new Promise<void>((r) => (subscribed = r));
  const done = (async () => {
    try {
      for await (
        const ev of watchExits(client, {
          ...options,
          signal: ctl.signal,
          onSubscribed: () => subscribed(),
        } as WatchExitsOptions)
      ) events.push(ev);
    } catch {
      // aborted by stop()
    }
  })();
  await Promise.race([ready, done]);
  return {
    events,
    stop: async () => {
      ctl.abort();
      await done;
    },
  };
}

/**
 * Starts a `taskwire serve` process (in its own process group) and resolves with
 * its URL and the runtime it names once it says where it listens. `stop()` ends
 * the whole group: launchers such as `bun run start` do not pass signals on.
 */
export async function spawnServer(
  bin: string,
  args: string[],
  cwd: string,
): Promise<{ url: string; runtime: string; child: ChildProcess; stop: () => void }> {
  const child = spawn(bin, args, { cwd, detached: true });
  const { url, runtime } = await new Promise<{ url: string; runtime: string }>((resolve, reject) => {
    let err = "";
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      const m = /on (https?:\/\/127\.0\.0\.1:\d+) with (\w+)/.exec(err);
      if (m) resolve({ url: m[1]!, runtime: m[2]! });
    });
    child.once("exit", (code) => reject(new Error(`${bin} ${args.join(" ")} exited ${code}: ${err}`)));
  });
  const stop = () => {
    try {
      process.kill(-child.pid!, "SIGTERM");
    } catch {
      // already gone
    }
  };
  return { url, runtime, child, stop };
}

/**
 * startServer with listen options as well (transport limits). For tests whose
 * client shares this process's event loop and opens many connections at once:
 * on a loaded machine it may take longer than the default header timeout to
 * send them, and the server then resets them.
 */
export async function startServerListening(
  source: TaskstatsSource,
  limits: Partial<Limits>,
  extra: Omit<ServerOptions, "source" | "limits">,
  listen: Omit<NonNullable<Parameters<typeof listenNode>[1]>, "host" | "port">,
): Promise<Running> {
  const server = createServer({ source, limits, ...extra });
  const listening = await listenNode(server, { ...listen, host: "127.0.0.1", port: 0 });
  return {
    server,
    listening,
    url: listening.url,
    client: createTaskwireClient(listening.url),
    close: () => listening.close(),
  };
}

/** A self-signed certificate and key (PEM) for 127.0.0.1, made with openssl in a temporary directory. */
export function loopbackCertificate(san = "IP:127.0.0.1"): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), "taskwire-tls-"));
  const [key, cert] = [join(dir, "key.pem"), join(dir, "cert.pem")];
  // dprint-ignore
  execFileSync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-days",
    "1",
    "-subj",
    "/CN=127.0.0.1",
    "-addext",
    `subjectAltName=${san}`,
    "-keyout",
    key,
    "-out",
    cert,
  ], { stdio: "pipe" });
  return { cert: readFileSync(cert, "utf8"), key: readFileSync(key, "utf8") };
}

/** A resume's whole replay after `seq` at once: Listener.replayFrom's batches, joined. */
export function replayAll<R extends CpuRecord, P>(l: Listener<R, P>, seq: number): StreamItem<R, P>[] {
  const replay = l.replayFrom(seq);
  const items = replay(Infinity);
  replay(0); // lets go of the batch, as a stream does when it ends
  return items;
}

/**
 * A feed driven by hand, for a registry under test: `sink` is what the registry gave start() (call its exit() to
 * feed records); `watched` and `closed` record what the registry told it.
 */
export function manualFeed<R extends CpuRecord>(
  nbits = 4,
): ExitFeed<R> & { sink: ExitSink<R>; watched: Set<number>; closed: boolean } {
  const feed = {
    possible: { nbits },
    sink: undefined as unknown as ExitSink<R>,
    watched: new Set<number>(),
    closed: false,
    start: (sink: ExitSink<R>) => (feed.sink = sink),
    watch: (cpus: readonly number[], on: boolean) =>
      cpus.forEach((c) => (on ? feed.watched.add(c) : feed.watched.delete(c))),
    close: async () => {
      feed.closed = true;
    },
  };
  return feed;
}

/** Takes each bearer token as a principal of its own name, with every role: many principals without a token file. */
export const tokenIsPrincipal: Authenticator = {
  required: true,
  reload: () => {},
  authenticate(_peer, authorization) {
    const id = /^Bearer (\w+)$/.exec(authorization ?? "")?.[1];
    if (id === undefined) throw new UnauthenticatedError("send Authorization: Bearer <name>");
    return { id, roles: new Set(ROLES), via: "token" };
  },
};

/** Whether `ss` (iproute2) runs here: the send-buffer tests read the kernel's socket memory with it. */
export const hasSs = (() => {
  try {
    execFileSync("ss", ["-V"]);
    return true;
  } catch {
    return false;
  }
})();

/** The server side's kernel send buffer (skmem tb, bytes: twice what SO_SNDBUF was set to) for each client port. */
export function sendBuffers(port: number): Map<number, number> {
  const out = execFileSync("ss", ["-tmnH", "state", "established", `( sport = :${port} )`], { encoding: "utf8" });
  const found = new Map<number, number>();
  for (const m of out.matchAll(/127\.0\.0\.1:(\d+)\s*\n?\s*skmem:\([^)]*\btb(\d+)/g)) {
    found.set(Number(m[1]), Number(m[2]));
  }
  return found;
}
