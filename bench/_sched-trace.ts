/**
 * Where a latency row's time goes, read from the kernel's scheduler trace
 * (tracefs: sched_switch and sched_waking on the "mono" clock, which is
 * nowUs()'s, so a stamp and a trace line compare directly). Root only.
 *
 * Each event's stamp -> read is split in three:
 *  - server: the stamp to the client's main thread's last wake-up before
 *    the read (the server's write, or the wake-up after which the client
 *    found the data; a wake-up of the thread while on a CPU ends no wait and
 *    is skipped);
 *  - wait: from that wake-up to the read, the time the client was off every
 *    CPU (woken and not yet run, or preempted);
 *  - client: from that wake-up to the read, its time on a CPU (its SDK's
 *    decoding and iterator).
 * An event whose stamp came after the client's last wake-up before its read
 * came while the client was awake, and is counted apart; so is one the trace
 * cannot place (its span crosses events the kernel dropped, or the client is
 * not on a CPU at its read). For the slowest 1% the wait is split again by
 * who held the CPU the client then ran on, while it waited there: the idle
 * task (the host: on a VM a woken vCPU that had halted runs when the host
 * schedules it), the server's main thread, its helpers (V8's GC and compiler
 * threads, libuv's), the client's helpers, or another process. The other
 * CPUs are not looked at: a client pinned to one CPU cannot use an idle one
 * beside it.
 */
import { CLOCK_BASE_US } from "./_clock.ts";
import { indexTrace, type TraceIndex } from "./_sched-trace-index.ts";

export { savedValue, type SchedTrace, startSchedTrace } from "./_tracefs.ts";
export { indexTrace, type TraceIndex };

/** Who held a CPU at some instant. */
type Holder = "idle" | "server main" | "server helpers" | "client helpers" | "other";

/** One row's split (µs): medians over its events, means over its slowest 1%. */
export interface PathSplit {
  events: number;
  /** Events that came while the client was awake (not split). */
  awake: number;
  /** Events the trace cannot place (not split). */
  unplaced: number;
  /** Events the kernel dropped from the row's traces (the trace is incomplete where it did). */
  lost: number;
  median: { server: number; wait: number; client: number };
  /** The slowest 1% (at or over the pooled p99): those split (means), and those not. */
  slow: { events: number; awake: number; unplaced: number; server: number; wait: number; client: number };
  /** The slowest 1%'s wait, µs per event, by who held the CPU the client then ran on. */
  slowWait: Record<Holder, number>;
}

/** One window's trace, its two processes, and each event's latency and arrival (nowUs()). */
export interface TracedWindow {
  index: TraceIndex;
  serverPid: number;
  clientPid: number;
  latencies: number[];
  arrivals: number[];
}

/**
 * A window's events placed in its trace. The latencies are copied: the
 * latency table's summarize() sorts a window's own in place, and each must
 * stay beside its arrival.
 */
export function tracedWindow(
  index: TraceIndex,
  pids: { serverPid: number; clientPid: number },
  latencies: readonly number[],
  arrivals: number[],
): TracedWindow {
  return { index, ...pids, latencies: [...latencies], arrivals };
}

interface Split {
  latency: number;
  server: number;
  wait: number;
  client: number;
  woken: number;
  /** The spans it waited off a CPU, each with the CPU it then ran on. */
  waits: [from: number, to: number, cpu: number][];
}

// The index of the first of `sorted` at or after `t` (by `key`), or its length.
function firstFrom<T>(sorted: T[], t: number, key: (x: T) => number): number {
  let lo = 0, hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (key(sorted[mid]!) < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// An event's split, or why it has none.
function splitOf(w: TracedWindow, latency: number, arrival: number): Split | "awake" | "unplaced" {
  const read = arrival - CLOCK_BASE_US, stamp = read - latency;
  if (w.index.gaps.some(([from, to]) => from <= read && to >= stamp)) return "unplaced";
  const wakings = w.index.wakings.get(w.clientPid) ?? [];
  const woken = wakings[firstFrom(wakings, read + 1, (t) => t) - 1];
  if (woken === undefined || woken < stamp) return "awake";
  const runs = w.index.onCpu.get(w.clientPid) ?? [];
  const waits: Split["waits"] = [];
  let t = woken, client = 0;
  for (let i = firstFrom(runs, woken + 1, ([, end]) => end); i < runs.length && runs[i]![0] <= read; i++) {
    const [start, end, cpu] = runs[i]!;
    if (start > t) waits.push([t, start, cpu]);
    client += Math.min(end, read) - Math.max(start, t);
    t = end;
  }
  if (t < read) return "unplaced"; // not on a CPU at its read: the trace and the stamps disagree
  return { latency, server: woken - stamp, wait: read - woken - client, client, woken, waits };
}

// Whose thread `tid` is.
function whose(w: TracedWindow, tid: number): Holder {
  if (tid === 0) return "idle";
  const tgid = w.index.tgid.get(tid);
  if (tgid === w.serverPid) return tid === tgid ? "server main" : "server helpers";
  if (tgid === w.clientPid && tid !== tgid) return "client helpers";
  return "other";
}

// An event's wait, µs by who held the CPU it waited for.
function waitBy(w: TracedWindow, s: Split): Record<Holder, number> {
  const into = noWait();
  for (const [from, to, cpu] of s.waits) {
    const runs = w.index.runs[cpu] ?? [];
    for (let i = firstFrom(runs, from + 1, ([, end]) => end); i < runs.length && runs[i]![0] < to; i++) {
      const [start, end, tid] = runs[i]!;
      into[whose(w, tid)] += Math.min(end, to) - Math.max(start, from);
    }
  }
  return into;
}

const noWait = (): Record<Holder, number> => ({
  idle: 0,
  "server main": 0,
  "server helpers": 0,
  "client helpers": 0,
  other: 0,
});
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** The split of a row's windows (its rounds), pooled. */
export function splitPath(windows: TracedWindow[]): PathSplit {
  const all = windows.flatMap((w) => w.latencies.map((l, i) => ({ s: splitOf(w, l, w.arrivals[i]!), w, l })));
  const done = (xs: typeof all) => xs.flatMap(({ s, w }) => typeof s === "string" ? [] : [{ s, w }]);
  const count = (xs: typeof all, what: string) => xs.filter(({ s }) => s === what).length;
  const pooled = all.map(({ l }) => l).sort((a, b) => a - b);
  const p99 = pooled[Math.floor(0.99 * pooled.length)] ?? Infinity;
  const slowAll = all.filter(({ l }) => l >= p99), slow = done(slowAll), splits = done(all).map(({ s }) => s);
  const slowWait = noWait();
  // One message's events share their wake-up: its wait is split once.
  const byWake = new Map<string, Record<Holder, number>>();
  for (const { s, w } of slow) {
    const key = `${w.clientPid}:${s.woken}`;
    const one = byWake.get(key) ?? waitBy(w, s);
    byWake.set(key, one);
    for (const h of Object.keys(one) as Holder[]) slowWait[h] += one[h] / slow.length;
  }
  const of = (xs: Split[], k: "server" | "wait" | "client", f: (xs: number[]) => number) => f(xs.map((s) => s[k]));
  const slowSplit = slow.map(({ s }) => s);
  return {
    events: all.length,
    awake: count(all, "awake"),
    unplaced: count(all, "unplaced"),
    lost: [...new Set(windows.map((w) => w.index))].reduce((n, index) => n + index.lost, 0),
    median: {
      server: of(splits, "server", median),
      wait: of(splits, "wait", median),
      client: of(splits, "client", median),
    },
    slow: {
      events: slow.length,
      awake: count(slowAll, "awake"),
      unplaced: count(slowAll, "unplaced"),
      server: of(slowSplit, "server", mean),
      wait: of(slowSplit, "wait", mean),
      client: of(slowSplit, "client", mean),
    },
    slowWait,
  };
}

/** The header of the table of where the traced rows' time went, one row a splitPath(). */
export const PATH_HEADER = [
  "stream",
  "placement",
  "events (came while the client was awake / the trace cannot place; events the kernel dropped)",
  "median us: server (stamp -> client's last wake-up) / wait (off a CPU since) / client (on a CPU since, -> read)",
  "slowest 1%: events split (awake / not placed)",
  "slowest 1%, mean us: server / wait / client",
  "slowest 1%'s wait, us per event, by who held the client's next CPU: idle (the host) / server main / server helpers / client helpers / other",
];

/** One traced row of that table. */
export function pathRow(what: string, placement: string, p: PathSplit): string[] {
  const us = (...xs: number[]) => xs.map((x) => x.toFixed(0)).join(" / ");
  const w = p.slowWait;
  return [
    what,
    placement,
    `${p.events} (${p.awake} / ${p.unplaced}; ${p.lost})`,
    us(p.median.server, p.median.wait, p.median.client),
    `${p.slow.events} (${p.slow.awake} / ${p.slow.unplaced})`,
    us(p.slow.server, p.slow.wait, p.slow.client),
    us(w.idle, w["server main"], w["server helpers"], w["client helpers"], w.other),
  ];
}
