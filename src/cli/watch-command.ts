/** `taskwire watch`: one line per task exit (exitsnoop + getdelays -l), with the server-side filters. */
import { exitEventToJson, type HostIdentity } from "@taskwire/client";
import { type Command, Option } from "commander";
import { escapeControls } from "../log/logger.ts";
import { addConnectionOptions, type Connection, connectionUnlessFleet } from "./connection.ts";
import { UsageError } from "./errors.ts";
import { type EventInput, type EventInputOptions, openEventInput } from "./event-input.ts";
import { formatEvent } from "./format.ts";
import { createOutput, drained, type Output, stopOnSignals } from "./output.ts";
import type { FleetFlags } from "./fleet-input.ts";
import { filterFrom, filterOptions, fleetFrom, fleetOptions, intArg } from "./options.ts";

/** Options of `taskwire watch`. */
export interface WatchFlags {
  readonly conn: Connection;
  readonly cpus?: string | undefined;
  readonly listener?: string | undefined;
  readonly json: boolean;
  readonly count?: number | undefined;
  readonly buffer?: number | undefined;
  readonly fields?: readonly string[] | undefined;
  readonly filter?: EventInputOptions["filter"];
  readonly fleet?: FleetFlags | undefined;
}

/** Registers `watch` on the program. */
export function addWatchCommand(program: Command): Command {
  const watch = program.command("watch")
    .description(
      "print one line per task exit on the given CPUs: time, cpu, pid, ppid, tgid, uid, comm, exit status, age, CPU time, delays, peak RSS, I/O (like exitsnoop and getdelays -l)",
    )
    .option("--cpus <cpulist>", 'CPUs to watch, kernel cpulist syntax: "0-3,5" ("all": every possible CPU)')
    .option("--listener <id>", "stream an existing listener (from Register) instead of --cpus")
    .option("--json", "print one JSON object per line, every field (see README: JSON output)")
    .option("--count <n>", "stop after n events", intArg(1))
    .addOption(
      new Option("--buffer <n>", "queue size to ask for, events (0: the server default)").argParser(
        intArg(0, 2 ** 32 - 1),
      ),
    )
    .option(
      "--fields <names>",
      "only these TaskStats fields, kernel names, comma-separated (server-side), e.g. ac_comm,ac_exitcode",
    );
  filterOptions(watch);
  fleetOptions(watch);
  addConnectionOptions(watch);
  return watch.action(async (o: Record<string, unknown>) => {
    const fleet = fleetFrom(o);
    const listener = o["listener"] as string | undefined;
    const cpus = (o["cpus"] as string | undefined) ?? (fleet !== undefined ? "all" : undefined);
    if (fleet !== undefined && (listener !== undefined || o["buffer"] !== undefined || o["fields"] !== undefined)) {
      throw new UsageError(
        "watch --nats reads the fleet's stream: --listener, --buffer and --fields apply to one server",
      );
    }
    if ((cpus === undefined) === (listener === undefined)) {
      throw new UsageError(
        cpus === undefined
          ? "watch: pass --cpus <cpulist> (e.g. --cpus 0-3) or --listener <id>"
          : "watch: pass --cpus <cpulist> or --listener <id>, not both: a listener's CPUs are its own",
      );
    }
    await watchCommand({
      conn: connectionUnlessFleet(o, fleet),
      cpus,
      listener,
      json: o["json"] === true,
      count: o["count"] as number | undefined,
      buffer: o["buffer"] as number | undefined,
      fields: typeof o["fields"] === "string"
        ? (o["fields"] as string).split(",").map((f) => f.trim()).filter(Boolean)
        : undefined,
      filter: filterFrom(o),
      fleet,
    });
  });
}

/** `taskwire watch`: one line per exit until interrupted, --count events, or the reader goes away. */
export async function watchCommand(flags: WatchFlags): Promise<void> {
  const ctl = new AbortController();
  const stop = () => ctl.abort();
  const unhandle = stopOnSignals(stop); // each deregisters before exiting
  const out = createOutput(stop);
  const input = openEventInput({
    conn: flags.conn,
    cpus: flags.cpus,
    listener: flags.listener,
    buffer: flags.buffer,
    fields: flags.fields,
    filter: flags.filter,
    fleet: flags.fleet,
    signal: ctl.signal,
    status: (line) => console.error(`taskwire: ${line}`),
    onSubscribed: (s) =>
      console.error(
        `taskwire: watching CPUs ${s.cpumask} on ${describeHost(s.host)} (listener ${
          escapeControls(s.listenerId)
        }); Ctrl-C stops`,
      ),
  });
  try {
    await _print(input, flags, out, ctl.signal);
  } finally {
    unhandle();
    ctl.abort();
    await input.release();
    await drained();
    out.dispose();
  }
}

async function _print(input: EventInput, flags: WatchFlags, out: Output, signal: AbortSignal) {
  // A durable fleet consumer acks what the loop took when it asks for the next event, so that must wait until the
  // line reached the OS (at once for a pipe, file or terminal; a socket buffers) and stop if stdout is gone: what is
  // not printed stays unacked. Interrupted, it prints on until watchFleet ends the iteration (about 3 s at most): it
  // first finishes the messages it partly printed, so the next run with the same --durable repeats nothing.
  const durable = flags.fleet?.durable !== undefined;
  let seen = 0;
  try {
    for await (const ev of input.events) {
      out.line(flags.json ? JSON.stringify(exitEventToJson(ev)) : formatEvent(ev, flags.fleet !== undefined));
      if (durable) await drained();
      if (out.closed || (signal.aborted && !durable)) return;
      if (flags.count !== undefined && ++seen >= flags.count) return;
    }
  } catch (err) {
    if (!signal.aborted) throw err;
  }
}

/** The host a stream comes from, for the status line. */
export function describeHost(host: HostIdentity | undefined): string {
  if (host === undefined) return "the server's host";
  return `${escapeControls(host.hostname)} (${escapeControls(host.source)}, boot ${
    escapeControls(host.bootId.slice(0, 8)) || "unknown"
  })`;
}
