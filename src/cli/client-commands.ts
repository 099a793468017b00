/** `taskwire get | watch | info`: thin clients over the SDK. */
import { toJsonString } from "@bufbuild/protobuf";
import { type TaskwireClient, watchExits } from "@taskwire/client";
import { TaskStatsSchema } from "../gen/taskwire/kernel/v1/taskstats_pb.ts";
import { ExitEventSchema, GetInfoResponseSchema, type HostIdentity } from "../gen/taskwire/v1/taskstats_pb.ts";
import { clientFor, type Connection } from "./connection.ts";
import { formatEvent, formatStatsTable } from "./format.ts";

const JSON_OPTS = { useProtoFieldName: true } as const;

function client(c: Connection): TaskwireClient {
  return clientFor(c);
}

/** `taskwire get pid N | tgid N`. */
export async function getCommand(conn: Connection, kind: "pid" | "tgid", id: number, json: boolean): Promise<void> {
  const c = client(conn);
  const stats = kind === "pid" ? (await c.getPid({ pid: id })).stats : (await c.getTgid({ tgid: id })).stats;
  if (stats === undefined) throw new Error(`the server sent no stats for ${kind} ${id}`);
  console.log(json ? toJsonString(TaskStatsSchema, stats, JSON_OPTS) : formatStatsTable(stats));
}

/** `taskwire info`. */
export async function infoCommand(conn: Connection, json: boolean, listeners = false): Promise<void> {
  const info = await client(conn).getInfo({ listeners });
  if (json) {
    console.log(toJsonString(GetInfoResponseSchema, info, JSON_OPTS));
    return;
  }
  const rows: [string, unknown][] = [
    ["source", info.source],
    ["host", info.host?.hostname ?? "(not reported)"],
    ["boot id", info.host?.bootId || "(unknown)"],
    ["machine id", info.host?.machineId || "(none)"],
    ["kernel", info.kernelRelease],
    ["server version", info.serverVersion],
    ["you are", `${info.principal} (roles: ${info.roles.join(", ") || "none"})`],
    ["server holds", info.capabilities.join(", ") || "(no capabilities)"],
    ["possible CPUs", info.possibleCpus],
    ["taskstats version", `${info.taskstatsVersion} (${info.taskstatsSize} bytes)`],
    ["delay accounting", info.delayacct ? "on" : "off (delay fields are zero; see kernel.task_delayacct)"],
    ["watched CPUs", info.watchedCpus || "(none)"],
    ["listeners", info.listeners],
    ["streams", info.streams],
    ["records produced", info.records],
    ["kernel drops", info.kernelDrops],
    ["subscriber drops", info.subscriberDrops],
    ["queue default/max", `${info.defaultBuffer}/${info.maxBuffer} events`],
    ["lease", `${info.leaseMs} ms`],
  ];
  for (const [k, v] of rows) console.log(`${k.padEnd(18)} ${v}`);
  if (!listeners) return;
  console.log(
    "\nlistener                              cpus        stream  queue          produced  lost(sub/kernel)  events/s",
  );
  for (const l of info.listenerDetails) {
    console.log(
      `${l.listenerId.padEnd(37)} ${l.cpumask.padEnd(11)} ${(l.streaming ? "yes" : "no").padEnd(7)} ` +
        `${`${l.queueDepth}/${l.queueCapacity}`.padEnd(14)} ${String(l.produced).padStart(8)}  ` +
        `${`${l.lostSubscriberOverflow}/${l.lostKernelOverflow}`.padEnd(16)}  ${l.eventsPerSecond.toFixed(1)}`,
    );
  }
}

/** Options of `taskwire watch`. */
export interface WatchFlags {
  conn: Connection;
  cpus?: string | undefined;
  listener?: string | undefined;
  json: boolean;
  count?: number | undefined;
  buffer?: number | undefined;
}

/** `taskwire watch`: one line per exit until interrupted (or --count events). */
export async function watchCommand(flags: WatchFlags): Promise<void> {
  const ctl = new AbortController();
  process.once("SIGINT", () => ctl.abort());
  const target = flags.listener !== undefined ? { listenerId: flags.listener } : { cpumask: flags.cpus ?? "" };
  let seen = 0;
  try {
    for await (
      const ev of watchExits(client(flags.conn), {
        ...target,
        signal: ctl.signal,
        ...(flags.buffer !== undefined && { buffer: flags.buffer }),
        onSubscribed: (s) =>
          console.error(
            `taskwire: watching CPUs ${s.cpumask} on ${describeHost(s.host)} (listener ${s.listenerId}); Ctrl-C stops`,
          ),
      })
    ) {
      console.log(flags.json ? toJsonString(ExitEventSchema, ev, JSON_OPTS) : formatEvent(ev));
      if (flags.count !== undefined && ++seen >= flags.count) break;
    }
  } catch (err) {
    if (!ctl.signal.aborted) throw err;
  }
}

function describeHost(host: HostIdentity | undefined): string {
  if (host === undefined) return "the server's host";
  return `${host.hostname} (${host.source}, boot ${host.bootId.slice(0, 8) || "unknown"})`;
}
