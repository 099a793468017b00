import http2 from "node:http2";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { configureLogging } from "../src/log/logger.ts";
import { createPacer, createTurnBudget } from "../src/runtime/_pacer.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { type Running, startServerListening } from "./helpers.ts";

const turn = () => new Promise<void>((r) => setImmediate(r));

describe("the pacer of new connections' first requests", () => {
  it("runs at most perTurn tasks per event-loop turn, in arrival order, until none wait", async () => {
    const pace = createPacer(4);
    const ran: number[] = [];
    for (let i = 0; i < 10; i++) pace("mallory", () => ran.push(i));
    expect(ran).toEqual([]); // never in the caller's own turn
    expect(pace.waiting).toBe(10);
    const perTurn: number[] = [];
    while (pace.waiting > 0) {
      const before = ran.length;
      await turn();
      perTurn.push(ran.length - before);
    }
    expect(perTurn.filter((n) => n > 0)).toEqual([4, 4, 2]);
    expect(ran).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it("shares each batch round-robin: another caller's request waits one turn, not the whole storm", async () => {
    const pace = createPacer(4);
    const ran: string[] = [];
    for (let i = 0; i < 1000; i++) pace("mallory", () => ran.push(`m${i}`));
    pace("alice", () => ran.push("a0"));
    pace("alice", () => ran.push("a1"));
    await turn();
    expect(ran).toEqual(["m0", "a0", "m1", "a1"]);
    await turn();
    expect(ran.slice(4)).toEqual(["m2", "m3", "m4", "m5"]);
  });

  it("keeps running when a task throws, and refuses a batch size below 1", async () => {
    const errors: string[] = [];
    const pace = createPacer(2, configureLogging({ write: (line) => errors.push(line) }));
    const ran: number[] = [];
    pace("a", () => {
      throw new Error("boom");
    });
    pace("a", () => ran.push(1));
    pace("a", () => ran.push(2));
    await turn();
    await turn();
    expect(ran).toEqual([1, 2]);
    expect(errors).toHaveLength(1);
    // One line: the message, then the stack as a field (escaped, clipped).
    expect(errors[0]).toMatch(/^taskwire: error: serving a request failed error=boom stack="Error: boom\\n {4}at /);
    expect(() => createPacer(0)).toThrow(RangeError);
    expect(() => createPacer(1.5)).toThrow(/whole number/);
  });

  it("drops abandoned tasks without running them or giving them a place in the batch", async () => {
    const pace = createPacer(2);
    const ran: number[] = [];
    for (let i = 0; i < 10; i++) pace("mallory", () => ran.push(i), () => i % 5 !== 4); // only 4 and 9 stay
    pace("alice", () => ran.push(100), () => false);
    await turn();
    expect(ran).toEqual([100, 4]); // 0-3 dropped on the way to 4, in the same turn (0 took mallory's round)
    expect(pace.waiting).toBe(5);
    await turn();
    expect(ran).toEqual([100, 4, 9]);
    expect(pace.waiting).toBe(0);
  });

  it("keeps arrival order across a long queue of one caller (its queue compacts as it drains)", async () => {
    const pace = createPacer(1000);
    const ran: number[] = [];
    for (let i = 0; i < 5000; i++) pace("mallory", () => ran.push(i));
    let turns = 0;
    while (pace.waiting > 0) {
      await turn();
      turns++;
      if (turns === 2) { for (let i = 5000; i < 5500; i++) pace("mallory", () => ran.push(i)); // while compacted
       }
    }
    expect(turns).toBe(6);
    expect(ran).toEqual(Array.from({ length: 5500 }, (_, i) => i));
  });
});

describe("the budget of requests served at once per turn on open connections", () => {
  it("says yes perTurn times in a turn, then no until the next turn; refuses a budget below 1", async () => {
    const budget = createTurnBudget(3);
    expect([1, 2, 3, 4, 5].map(() => budget.take())).toEqual([true, true, true, false, false]);
    await turn();
    expect([1, 2, 3, 4].map(() => budget.take())).toEqual([true, true, true, false]);
    expect(() => createTurnBudget(0)).toThrow(RangeError);
  });
});

let running: Running | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

// An h2c session from `localAddress` (another loopback address is another caller), past its first request.
async function servingSession(url: string, localAddress: string): Promise<http2.ClientHttp2Session> {
  const { hostname, port } = new URL(url);
  const session = http2.connect(url, {
    createConnection: () => net.connect({ host: hostname, port: +port, localAddress }),
  });
  session.on("error", () => {});
  await getInfo(session);
  return session;
}

// One GetInfo; resolves when its response's head arrives.
function getInfo(session: http2.ClientHttp2Session): Promise<void> {
  const s = session.request({
    ":method": "POST",
    ":path": "/taskwire.v1.TaskStats/GetInfo",
    "content-type": "application/json",
  });
  s.on("error", () => {});
  s.resume();
  s.end("{}");
  return new Promise((resolve) => s.once("response", () => resolve()));
}

describe("a burst on connections already serving", () => {
  it("is served over several turns, and another caller's request on its open connection within a few", async () => {
    running = await startServerListening(createSimSource({ cpus: 1, exitRate: 10, seed: 3 }), {}, {}, {});
    const mallory = await Promise.all([1, 2, 3, 4].map(() => servingSession(running!.url, "127.0.0.1")));
    const alice = await servingSession(running.url, "127.0.0.2");
    let now = 0; // event-loop turns since the burst was sent (server and clients share this process)
    let ticking = true;
    const tick = (): void => {
      now++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const burst = mallory.flatMap((s) => Array.from({ length: 100 }, () => getInfo(s).then(() => now)));
    const alices = getInfo(alice).then(() => now);
    const turns = await Promise.all(burst);
    const alicesTurn = await alices;
    ticking = false;
    for (const s of [...mallory, alice]) s.close();
    // 400 requests at 64 a turn (--accepts-per-turn 8) take 7 turns; served in one turn, they came back in 1-2.
    expect(new Set(turns).size).toBeGreaterThanOrEqual(5);
    expect(alicesTurn).toBeLessThan(Math.max(...turns));
  });
});
