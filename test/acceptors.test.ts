/**
 * New connections are accepted a batch per event-loop turn, not one. libuv (Node 20's 1.46) accepts one
 * connection each time the listening socket is reported readable; the server listens through
 * --accepts-per-turn copies of the socket (runtime/_acceptors.ts), each reported on its own. With turns made
 * long, as a storm's make them, a burst of connections waits in the kernel's accept queue (read from
 * /proc/net/tcp, where a listening socket's rx_queue is its accept queue) for a few turns, not one per
 * connection. A server with --accepts-per-turn 1 is the control: it takes one per turn.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { createServer as createTcpServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { type Listening, listenNode } from "../src/runtime/node.ts";
import { acceptDescriptors, MAX_ACCEPT_DESCRIPTORS } from "../src/runtime/_acceptors.ts";
import { DEFAULT_TRANSPORT_LIMITS } from "../src/runtime/_transport-limits.ts";
import { createServer } from "../src/server/server.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";

const BURST = 64;
const TURN_MS = 15;

let running: { listening: Listening; child?: ChildProcess } | undefined;
afterEach(async () => {
  running?.child?.kill();
  await running?.listening.close();
  running = undefined;
});

// The fields of /proc/net/tcp's line for the socket listening on 127.0.0.1:port.
function listenLine(port: number): string[] | undefined {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  return readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1).map((l) => l.trim().split(/\s+/))
    .find((f) => f[1] === local && f[3] === "0A");
}

// Its accept queue (rx_queue, for a listening socket), -1 if nothing listens.
function acceptQueue(port: number): number {
  const f = listenLine(port);
  return f === undefined ? -1 : parseInt(f[4]!.split(":")[1]!, 16);
}

// A Python process that connects BURST times (the kernel completes each handshake whether or not the server
// has accepted it), says "up" and holds them until killed.
function connectBurst(port: number): { child: ChildProcess; up: Promise<void> } {
  const code = [
    "import socket, sys",
    `held = [socket.create_connection(("127.0.0.1", ${port})) for _ in range(${BURST})]`,
    "print('up', flush=True)",
    "sys.stdin.read()",
  ].join("\n");
  const child = spawn("python3", ["-c", code], { stdio: ["pipe", "pipe", "inherit"] });
  const up = new Promise<void>((resolve, reject) => {
    child.stdout!.once("data", () => resolve());
    child.once("exit", (c) => reject(new Error(`the connecting process exited (${c}) before it was up`)));
  });
  return { child, up };
}

// Event-loop turns of TURN_MS each (a busy wait in setImmediate), reading the accept queue after each,
// until the burst has come and gone (or 400 turns). Returns the queue after each turn.
async function busyTurns(port: number, up: Promise<void>): Promise<number[]> {
  let isUp = false;
  void up.then(() => isUp = true);
  const seen: number[] = [];
  for (let turn = 0; turn < 400; turn++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    const until = performance.now() + TURN_MS;
    while (performance.now() < until) { /* a turn of a storm's work */ }
    seen.push(acceptQueue(port));
    if (isUp && seen.at(-1) === 0) break;
  }
  return seen;
}

// `acceptsPerTurn` undefined: the server's default.
async function burstUnderBusyTurns(acceptsPerTurn?: number): Promise<{ peak: number; turns: number }> {
  const source = createSimSource({ cpus: 2, exitRate: 0, seed: 1 });
  const listening = await listenNode(createServer({ source }), { port: 0, ...(acceptsPerTurn && { acceptsPerTurn }) });
  running = { listening };
  if (acceptsPerTurn === undefined) {
    expect(listeningDescriptors(listening.port).length).toBe(DEFAULT_TRANSPORT_LIMITS.acceptsPerTurn);
  }
  const { child, up } = connectBurst(listening.port);
  running.child = child;
  const seen = await busyTurns(listening.port, up);
  await up;
  expect(seen.at(-1), `the accept queue never emptied: ${seen.join(",")}`).toBe(0);
  const peak = Math.max(...seen);
  // The turns from the queue's peak until it was empty.
  return { peak, turns: seen.length - 1 - seen.indexOf(peak) };
}

describe("accepting new connections while turns are long", () => {
  // The default, 8 (8 turns for 64 queued here; 16 a turn took 4).
  const perTurn = DEFAULT_TRANSPORT_LIMITS.acceptsPerTurn;
  it(`a burst of ${BURST} connections is accepted in a few turns (--accepts-per-turn ${perTurn}, the default)`, async () => {
    const { peak, turns } = await burstUnderBusyTurns();
    expect(peak, "the burst did not queue: the turns were not long enough to show anything").toBeGreaterThan(16);
    // `perTurn` a turn: ceil(peak / perTurn) turns, and one or two for connections still arriving at the peak.
    expect(turns, `${peak} queued took ${turns} turns`).toBeLessThanOrEqual(Math.ceil(peak / perTurn) + 2);
    // Every connection was accepted and is served.
    expect((await fetch(`${running!.listening.url}/healthz`)).status).toBe(200);
  });

  it("the control: with --accepts-per-turn 1 the same burst is accepted one per turn", async () => {
    const { peak, turns } = await burstUnderBusyTurns(1);
    expect(peak).toBeGreaterThan(16);
    // libuv's one accept per readiness event (if a later Node accepts in a loop again, this fails, and the
    // copies in runtime/_acceptors.ts are no longer needed).
    expect(turns, `${peak} queued took ${turns} turns`).toBeGreaterThanOrEqual(peak - 2);
  });
});

describe("the listening socket's copies", () => {
  it("are each a descriptor that exec does not pass on, and close() closes every one: the port is free again", async () => {
    const source = createSimSource({ cpus: 2, exitRate: 0, seed: 1 });
    const listening = await listenNode(createServer({ source }), { port: 0, acceptsPerTurn: 5 });
    const mine = listeningDescriptors(listening.port);
    expect(mine.length, "descriptors of the listening socket").toBe(5);
    for (const fd of mine) expect(isCloseOnExec(fd), `fd ${fd} is not close-on-exec`).toBe(true);
    await listening.close();
    expect(listeningDescriptors(listening.port)).toEqual([]);
    // Were a copy still open, the socket would still be listening, and binding the port would fail.
    const again = createTcpServer();
    await new Promise<void>((resolve, reject) => {
      again.once("error", reject);
      again.listen({ port: listening.port, host: "127.0.0.1" }, resolve);
    });
    await new Promise((r) => again.close(r));
  });
});

describe("the listening socket's backlog", () => {
  it("every copy keeps the accept queue --max-connections long (a copy's listen() at Node's 511 cut it)", async () => {
    const somaxconn = Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8"));
    const maxConnections = Math.min(1500, somaxconn);
    const source = createSimSource({ cpus: 2, exitRate: 0, seed: 1 });
    const listening = await listenNode(createServer({ source }), { port: 0, maxConnections, acceptsPerTurn: 16 });
    try {
      expect(listeningDescriptors(listening.port).length).toBe(16);
      // ss shows a listening socket's backlog as its Send-Q.
      const line = execFileSync("ss", ["-ltnH", `sport = :${listening.port}`], { encoding: "utf8" }).trim();
      expect(Number(line.split(/\s+/)[2]), line).toBe(Math.max(511, maxConnections));
    } finally {
      await listening.close();
    }
  });
});

describe("how many descriptors accept", () => {
  it("--accepts-per-turn, at most 64, at most one per 64 descriptors free, at least one", () => {
    expect(acceptDescriptors(16, undefined)).toBe(16);
    expect(acceptDescriptors(1000, undefined)).toBe(MAX_ACCEPT_DESCRIPTORS);
    expect(acceptDescriptors(16, 4000)).toBe(16);
    expect(acceptDescriptors(16, 300)).toBe(4); // a tight ulimit keeps its descriptors for connections
    expect(acceptDescriptors(16, 8)).toBe(1);
    expect(acceptDescriptors(1, 100_000)).toBe(1);
  });
});

// This process's descriptors for the socket listening on 127.0.0.1:port (matched by inode).
function listeningDescriptors(port: number): number[] {
  const inode = listenLine(port)?.[9];
  if (inode === undefined) return [];
  return readdirSync("/proc/self/fd").map(Number).filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === `socket:[${inode}]`;
    } catch {
      return false; // closed since the listing
    }
  });
}

// O_CLOEXEC in /proc/self/fdinfo's octal flags.
function isCloseOnExec(fd: number): boolean {
  const flags = /^flags:\s+([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))?.[1];
  return flags !== undefined && (parseInt(flags, 8) & 0o2000000) !== 0;
}
