/** `taskwire top`: a live view of exits aggregated over a sliding window, like delaytop and top. */
import { type Command, Option } from "commander";
import { escapeControls } from "../log/logger.ts";
import { addConnectionOptions, clientFor, type Connection, connectionUnlessFleet } from "./connection.ts";
import { type EventInputOptions, openEventInput } from "./event-input.ts";
import { bytes } from "./format.ts";
import type { FleetFlags } from "./fleet-input.ts";
import { filterFrom, filterOptions, fleetFrom, fleetOptions, intArg } from "./options.ts";
import { createOutput, drained, type Output, stopOnSignals } from "./output.ts";
import {
  createTopAggregator,
  GROUP_BYS,
  type GroupBy,
  SORT_KEYS,
  type SortKey,
  type TopAggregator,
  type TopSnapshot,
} from "./top-aggregate.ts";

/** Options of `taskwire top`. */
export interface TopFlags {
  readonly conn: Connection;
  readonly cpus?: string | undefined;
  readonly windowSec: number;
  readonly groupBy: GroupBy;
  readonly sort: SortKey;
  readonly maxGroups: number;
  readonly limit: number;
  readonly refreshMs: number;
  readonly once: boolean;
  readonly json: boolean;
  readonly buffer?: number | undefined;
  readonly filter?: EventInputOptions["filter"];
  readonly fleet?: FleetFlags | undefined;
}

/** Registers `top` on the program. */
export function addTopCommand(program: Command): Command {
  const top = program.command("top")
    .description(
      "live view of task exits over a sliding window, grouped by comm, uid, tgid or host: exits/s, CPU time, average CPU/IO/memory delay, peak RSS, I/O bytes, nonzero exits (like delaytop; no cgroup grouping: an exit record does not name its cgroup and the task is gone when it arrives)",
    )
    .option("--cpus <cpulist>", "CPUs to watch (default: every possible CPU)")
    .option("--window <s>", "seconds the view aggregates over", intArg(1, 3600), 10)
    .addOption(new Option("--by <key>", "group exits by").choices([...GROUP_BYS]).default("comm"))
    .addOption(new Option("--sort <column>", "sort by (descending)").choices([...SORT_KEYS]).default("cpu"))
    .option(
      "--max-groups <n>",
      'most groups kept per second of window; exits of the rest are folded into "(other)" (bounds memory)',
      intArg(1, 100_000),
      1000,
    )
    .option("--limit <n>", "rows shown", intArg(1, 100_000), 20)
    .option("--refresh <ms>", "time between frames", intArg(100, 3_600_000), 1000)
    .option("--once", "collect for one window, print one frame and exit 0 (for scripts, with --json)")
    .option("--json", "print each frame as one JSON document (see README: JSON output)")
    .option("--buffer <n>", "queue size to ask for, events (0: the server default)", intArg(0, 2 ** 32 - 1));
  filterOptions(top);
  fleetOptions(top);
  addConnectionOptions(top);
  return top.action(async (o: Record<string, unknown>) => {
    const fleet = fleetFrom(o);
    await topCommand({
      conn: connectionUnlessFleet(o, fleet),
      cpus: o["cpus"] as string | undefined,
      windowSec: o["window"] as number,
      groupBy: o["by"] as GroupBy,
      sort: o["sort"] as SortKey,
      maxGroups: o["maxGroups"] as number,
      limit: o["limit"] as number,
      refreshMs: o["refresh"] as number,
      once: o["once"] === true,
      json: o["json"] === true,
      buffer: o["buffer"] as number | undefined,
      filter: filterFrom(o),
      fleet,
    });
  });
}

/** `taskwire top`: frames until interrupted (or one with --once). */
export async function topCommand(flags: TopFlags): Promise<void> {
  // A fleet has no one server to ask: every CPU, and delay accounting assumed on (hosts differ).
  const info = flags.fleet === undefined
    ? await clientFor(flags.conn).getInfo({})
    : { possibleCpus: "all", delayacct: null };
  const cpus = flags.cpus ?? info.possibleCpus;
  const ctl = new AbortController();
  const stop = () => ctl.abort();
  const unhandle = stopOnSignals(stop); // each deregisters before exiting
  const out = createOutput(stop);
  const agg = createTopAggregator({ ...flags, startMs: Date.now(), perHost: flags.fleet !== undefined });
  let host = flags.fleet === undefined ? "" : `fleet ${flags.fleet.hosts ?? "*"} via NATS`;
  const input = openEventInput({
    conn: flags.conn,
    cpus,
    buffer: flags.buffer,
    filter: flags.filter,
    fleet: flags.fleet,
    signal: ctl.signal,
    status: (line) => console.error(`taskwire: ${line}`),
    onSubscribed: (s) => (host = s.host?.hostname ?? ""),
  });
  const pump = (async () => {
    for await (const ev of input.events) agg.add(ev, Date.now());
  })();
  try {
    await Promise.race([pump, _frames(flags, agg, out, ctl.signal, () => ({ host, delayacct: info.delayacct }))]);
  } catch (err) {
    if (!ctl.signal.aborted) throw err;
  } finally {
    unhandle();
    ctl.abort();
    await pump.catch(() => {});
    await input.release();
    if (out.isTTY && !flags.once) out.write("\x1b[?25h"); // the cursor back
    await drained();
    out.dispose();
  }
}

/** What a frame says about the server besides the numbers. */
interface FrameContext {
  readonly host: string;
  /** Whether the server accounts delays; null for a fleet, whose hosts may differ. */
  readonly delayacct: boolean | null;
}

async function _frames(flags: TopFlags, agg: TopAggregator, out: Output, signal: AbortSignal, ctx: () => FrameContext) {
  if (flags.once) {
    await _sleep(flags.windowSec * 1000, signal);
    if (!signal.aborted) out.line(_frame(flags, agg.snapshot(Date.now(), flags.limit), ctx(), false));
    return;
  }
  const tty = out.isTTY && !flags.json;
  while (!signal.aborted) {
    await _sleep(flags.refreshMs, signal);
    if (signal.aborted) return;
    const frame = _frame(flags, agg.snapshot(Date.now(), flags.limit), ctx(), tty);
    // On a terminal the frame is redrawn in place (cursor home, clear); piped, frames follow each other.
    out.write(tty ? `\x1b[?25l\x1b[H\x1b[2J${frame}\n` : `${frame}\n${flags.json ? "" : "\n"}`);
  }
}

function _frame(flags: TopFlags, snap: TopSnapshot, ctx: FrameContext, tty: boolean): string {
  if (flags.json) return JSON.stringify(_snake({ ...ctx, time: new Date().toISOString(), ...snap }));
  return formatTop(snap, ctx.host, { tty, ...(ctx.delayacct !== null && { delayacct: ctx.delayacct }) });
}

// JSON keys in snake_case, like every other JSON the CLI prints (the kernel's and proto's spelling).
function _snake(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(_snake);
  if (typeof v !== "object" || v === null) return v;
  return Object.fromEntries(
    Object.entries(v).map(([k, x]) => [
      k.replace(/KiB$/, "Kib").replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`),
      _snake(x),
    ]),
  );
}

const COLUMNS = ["EXITS/S", "CPU", "CPU-DLY", "IO-DLY", "MEM-DLY", "PEAK-RSS", "IO", "FAILED"] as const;

function dur(ns: number): string {
  if (ns === 0) return "0";
  if (ns < 1e6) return `${(ns / 1e3).toFixed(0)}us`;
  if (ns < 1e9) return `${(ns / 1e6).toFixed(1)}ms`;
  return `${(ns / 1e9).toFixed(2)}s`;
}

/** One frame as text: a header (host, window, exits, loss), then one row per group. */
export function formatTop(snap: TopSnapshot, host: string, o: { tty?: boolean; delayacct?: boolean } = {}): string {
  const tty = o.tty === true;
  const lost = snap.lost > 0 || snap.lostUnknown
    ? `, LOST ${snap.lostUnknown ? "an unknown number of" : snap.lost} event(s)`
    : ", no loss";
  const head = `taskwire top - ${escapeControls(host) || "?"} - ${new Date().toTimeString().slice(0, 8)} - last ${
    Number(snap.coveredSec.toFixed(1))
  }s: ${snap.exits} exits in ${snap.groups} ${snap.groupBy} group(s)${lost}; sorted by ${snap.sort}`;
  const keyW = Math.min(24, Math.max(snap.groupBy.length, ...snap.rows.map((r) => escapeControls(r.key).length)));
  const th = `${snap.groupBy.toUpperCase().padEnd(keyW)} ${COLUMNS.map((c) => c.padStart(9)).join(" ")}`;
  const rows = snap.rows.map((r) =>
    `${escapeControls(r.key).slice(0, keyW).padEnd(keyW)} ${
      [
        r.exitsPerSec.toFixed(1),
        dur(r.cpuUs * 1000),
        dur(r.cpuDelayAvgNs),
        dur(r.ioDelayAvgNs),
        dur(r.memDelayAvgNs),
        bytes(r.peakRssKiB * 1024),
        bytes(r.ioBytes),
        String(r.failed),
      ].map((c) => c.padStart(9)).join(" ")
    }`
  );
  const legend =
    "CPU: user+system time in the window; *-DLY: average delay per delay event; IO: storage bytes read+written" +
    (o.delayacct === false
      ? "\n(kernel.task_delayacct=0 on the server: IO and MEM delays are zero; CPU delay is filled regardless)"
      : "");
  return [head, "", tty ? `\x1b[7m${th}\x1b[0m` : th, ...rows, "", legend].join("\n");
}

function _sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
