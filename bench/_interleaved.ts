/**
 * The latency bench's interleaved rounds: the servers compared (the bare
 * Connect baseline and taskwire) each run in a process of their own, each
 * read by its own client, and take turns producing in 500 ms slices through
 * the window. Every server's events then sample the same seconds of the
 * host: the host's steal comes in bursts lasting seconds and varies 0-22%
 * between rounds minutes apart, and a row measured after another compares
 * its own code with a different host. Only one server produces at a time,
 * so the machine's load is that of one server and its client, as in the
 * other rows. Each round starts its processes anew and warms them up (code
 * optimized, heap at its steady size, as a server runs in production), so
 * that no process's luck lasts through every round; their heaps are kept as
 * `taskwire serve` keeps its own. After the warm-up each process makes a
 * full collection, as the rows one after the other do before each window:
 * a new process's first old-space collection, of what starting it left,
 * came 4-5 s into its producing, inside the window.
 */
import { seeded } from "./_bootstrap.ts";
import { type LineChild, startLineChild } from "./_child.ts";
import type { GcTally } from "./_heap.ts";
import type { LatencyServerKind } from "./_latency-servers.ts";
import { indexTrace, startSchedTrace, type TracedWindow, tracedWindow } from "./_sched-trace.ts";
import {
  childCommand,
  type ChildPlacement,
  type Counter,
  type CounterOptions,
  cpuTimes,
  sleep,
  startCounter,
  stealSince,
  withArrivals,
  within,
} from "./_shared.ts";

/**
 * A turn: one server produces, the others are quiet. A turn's first message
 * comes after the other servers' turns, its server and client cold (caches
 * and branch predictors holding the others' work): it is slower than the
 * rest for every server. With 100 ms turns, as until the fortieth session,
 * those messages were 1.0% of a server's events, right at the p99 (a
 * turn's first message's median 430-600 µs against 210-350 for the rest), so
 * the p99 in turns was the first message's latency, not the tail the other
 * rows measure. At 500 ms they are 0.2%; latency.ts reports them in a column
 * of their own (firstMessages).
 */
export const SLICE_MS = 500;

/**
 * The latencies of each turn's first message in a window's events, in the
 * order read: a turn starts at the first event and wherever the gap since
 * the previous read is over half a turn (the other servers' turns lie
 * between a server's), and its first message's events are those read at the
 * turn's first instant (a message is read at one `now`).
 */
export function firstMessages(latencies: readonly number[], arrivals: readonly number[]): number[] {
  const out: number[] = [];
  let turnStart: number | undefined, previous: number | undefined;
  for (const [i, read] of arrivals.entries()) {
    if (previous === undefined || read - previous > (SLICE_MS / 2) * 1000) turnStart = read;
    if (read === turnStart) out.push(latencies[i]!);
    previous = read;
  }
  return out;
}

/**
 * Each server's production before the first round, and before each window
 * of the rows one after the other (latency.ts), at 10,000 events a second:
 * long enough for V8 to have optimized the servers' code. With 1 s there, as
 * until the fortieth session, TurboFan still compiled 15-25 functions of the
 * servers' path in each of taskwire's 2 s windows (node --trace-opt), 2-26 ms
 * each on V8's helper threads; after 3 s, 1 or none from the second round on.
 * At a lower rate a row warms up on as many events (warmUpMs).
 */
export const WARM_UP_MS = 3000;

/**
 * The events a row warms up on, at any rate: WARM_UP_MS at 10,000/s. V8
 * optimizes a function once it has run enough times, so a warm-up counted
 * in time warms a tenth as much at a tenth of the rate. At 1,000/s with 3 s,
 * V8's helper threads spent 8-30 ms of each of taskwire's 2 s windows in
 * TurboFan (perf, forty-second session), and its slowest 1% waited 151-721
 * µs an event behind them; with 30 s, none and 0 µs. Each row starts a new
 * server, and what the rows before optimized does not all carry over
 * (`node --trace-opt`): in each of taskwire's 3 s-warmed windows the young
 * streams' write wrapper was deoptimized when its stream graduated (1 MiB
 * written), and in round 2 the sim's `#pickVictim` was optimized again, its
 * code dropped by the collection with the server before. A taskwire server
 * left running at 1,000/s compiled 171 functions in its first 10 s and 22
 * more in the next 30.
 */
export const WARM_UP_EVENTS = 30_000;

/** The warm-up of a row at `perSecond`: WARM_UP_EVENTS, and at least WARM_UP_MS. */
export function warmUpMs(perSecond: number): number {
  return Math.max(WARM_UP_MS, Math.ceil((WARM_UP_EVENTS / perSecond) * 1000));
}

/** One server's events over a round, the host's steal over the round (%), and the server process's collections. */
export interface ServerWindow {
  latencies: number[];
  steal: number | undefined;
  gc: GcTally;
  /** Its turns' first messages' latencies (firstMessages). */
  firstOfTurns: number[];
  /** Its events and the round's sched trace, when traced. */
  traced?: TracedWindow;
}

/** A server process, its client, and the commands that drive it. */
interface Running {
  readonly counter: Counter;
  readonly server: LineChild;
  close(): void;
  kill(): void;
}

/** Where the servers and their clients run. */
export interface InterleavedPlacement {
  readonly server: ChildPlacement;
  readonly client: CounterOptions;
  /** Whether each round is traced (_sched-trace.ts; root only), its clients reporting each event's arrival. */
  readonly schedTrace?: boolean;
}

/**
 * Server processes run without V8's memory reducer. A full collection that
 * gives back memory (or finds the heap fragmented) arms it (8 s, V8's
 * memory-reducer.cc NotifyMarkCompact), and when it fires in a process that
 * allocates little, as an idle server in another's turn does, it collects
 * once or twice, 600 ms apart (V8's callback flag "collect all external memory",
 * 2-12 ms each, incremental marking before). The round's collection after the
 * warm-up armed it in every server at once, so 8 s later, inside the window,
 * idle servers collected on the CPUs the producing server and its client ran
 * on. A log of every collection (forty-first session) found 10 such in 5
 * rounds (20 server processes), 8.1-8.9 s after the round's collection, in
 * the bare servers' and the made-ahead server's processes; with the reducer
 * off, none in 5 rounds.
 * A server idle while another is measured is the bench's doing, not any
 * server's.
 */
const NO_MEMORY_REDUCER = "--no-memory-reducer";

async function startServerProcess(
  kind: LatencyServerKind,
  perSecond: number,
  o: InterleavedPlacement,
): Promise<Running> {
  const script = new URL("./_latency-server-process.js", import.meta.url).pathname;
  const [cmd, argv] = childCommand([NO_MEMORY_REDUCER, script, kind, String(perSecond)], o.server);
  const [server, ready] = await startLineChild(cmd, argv, (l) => l.startsWith("url "));
  let counter: Counter;
  try {
    // Each event's arrival: where each turn starts (firstMessages), and a traced event's place in the trace.
    counter = await startCounter(ready.slice(4), 1, "latency", withArrivals(o.client));
  } catch (err) {
    void server.end(); // not yet in the round's list, which closes the rest
    throw err;
  }
  return {
    counter,
    server,
    close: () => (counter.stop(), void server.end()),
    kill: () => (counter.kill(), void server.proc.kill("SIGKILL")),
  };
}

/** Interleaved rounds of `kinds` (one window of each per round), each round with servers and clients of its own. */
export async function interleavedRounds(
  kinds: readonly LatencyServerKind[],
  perSecond: number,
  o: InterleavedPlacement & { rounds: number; windowMs: number },
): Promise<ServerWindow[][]> {
  const rounds: ServerWindow[][] = [];
  for (let r = 0; r < o.rounds; r++) rounds.push(await freshRound(kinds, perSecond, { ...o, seed: r }));
  return rounds;
}

// New processes for each round: what a process keeps for its life (the CPU the scheduler settled it on, its heap's
// layout) then varies between rounds, where the ratio's interval counts it, instead of favouring one server in all.
async function freshRound(
  kinds: readonly LatencyServerKind[],
  perSecond: number,
  o: InterleavedPlacement & { windowMs: number; seed: number },
): Promise<ServerWindow[]> {
  const running: Running[] = [];
  let failed = true, over = false;
  try {
    const work = async () => {
      for (const kind of kinds) {
        const started = await startServerProcess(kind, perSecond, o);
        if (over) return started.kill(), undefined as never; // started after the deadline: nobody reads it
        running.push(started);
      }
      // Warm-up: every process's code optimized and its heap grown to its working size before the window; then
      // what starting it left collected, and a turn each again after the collection.
      await takeTurns(running, warmUpMs(perSecond) * kinds.length);
      await Promise.all(running.map((s) => s.server.ask("collect")));
      await takeTurns(running, SLICE_MS * kinds.length);
      return await round(running, o);
    };
    // Its deadline: three times what it should take, plus each process's start.
    const expected = (warmUpMs(perSecond) + o.windowMs) * kinds.length;
    const result = await within(work(), 3 * expected + 10_000 * kinds.length, `interleaved round ${o.seed + 1}`);
    failed = false;
    return result;
  } finally {
    over = true;
    for (const s of running) failed ? s.kill() : s.close();
  }
}

// One round: each server produces for windowMs in all, in turns, in an order of its own (seeded by the round's
// number): in a fixed cycle each server would always follow the same one, and what a turn leaves behind (its
// client still reading, a collection) would always fall on the same server.
// A traced round is traced from just before its first marks to its last.
async function round(
  running: Running[],
  o: { windowMs: number; seed: number; schedTrace?: boolean },
): Promise<ServerWindow[]> {
  const trace = o.schedTrace === true ? startSchedTrace() : undefined;
  let marks: Awaited<ReturnType<Counter["mark"]>>[], text: string | undefined, steal, gcs: GcTally[];
  try {
    await Promise.all(running.map((s) => s.counter.mark()));
    await Promise.all(running.map((s) => s.server.ask("gc")));
    const before = cpuTimes();
    await takeTurns(shuffled(running, o.seed), o.windowMs * running.length);
    steal = stealSince(before);
    gcs = await Promise.all(running.map((s) => s.server.ask<GcTally>("gc")));
    await sleep(200); // the last turn's events arrive
    marks = await Promise.all(running.map((s) => s.counter.mark()));
  } finally {
    text = trace?.stop();
  }
  const index = text === undefined ? undefined : indexTrace(text);
  return marks.map(({ latencies, arrivals = [] }, k) => {
    const window: ServerWindow = { latencies, steal, gc: gcs[k]!, firstOfTurns: firstMessages(latencies, arrivals) };
    if (index === undefined) return window;
    const pids = { serverPid: running[k]!.server.proc.pid!, clientPid: running[k]!.counter.pid };
    return { ...window, traced: tracedWindow(index, pids, latencies, arrivals) };
  });
}

// A copy of `xs` in an order drawn from `seed` (Fisher-Yates: the same round, the same order).
function shuffled<T>(xs: readonly T[], seed: number): T[] {
  const out = [...xs], random = seeded(seed + 1);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

// Turns in `running`'s order, over and over, for totalMs.
async function takeTurns(running: Running[], totalMs: number): Promise<void> {
  for (let t = 0, i = 0; t < totalMs; t += SLICE_MS, i++) {
    const on = i % running.length;
    await Promise.all(running.map((s, k) => s.server.ask(k === on ? "on" : "off")));
    await sleep(SLICE_MS);
  }
  await Promise.all(running.map((s) => s.server.ask("off")));
}
