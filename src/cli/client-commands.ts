/** `taskwire get | info`: thin clients over the SDK. */
import { callerBucket } from "../core/admission.ts";
import { GetInfoResponseSchema, messageToJson, TaskStatsSchema } from "@taskwire/client";
import { formatBytes } from "../core/byte-counts.ts";
import { escapeControls } from "../log/logger.ts";
import { clientFor, type Connection } from "./connection.ts";
import { formatStatsTable, tasksSeen } from "./format.ts";
import { formatReport, TGID_NOTE } from "./report.ts";

/** How `get` prints: a readable summary, every raw field, or JSON. */
export type GetStyle = "summary" | "all" | "json";

/** `taskwire get pid N | tgid N`. */
export async function getCommand(conn: Connection, kind: "pid" | "tgid", id: number, style: GetStyle): Promise<void> {
  const c = clientFor(conn);
  const [stats, info, task] = await Promise.all([
    kind === "pid" ? c.getPid({ pid: id }).then((r) => r.stats) : c.getTgid({ tgid: id }).then((r) => r.stats),
    // Only for the report's note on delay accounting: its failure must not hide GetPid's or GetTgid's own answer.
    style === "summary" ? c.getInfo({}).catch(() => undefined) : undefined,
    // Only for the note on whose group a tgid record is: the kernel answers a thread's id with its whole process.
    style === "summary" && kind === "tgid" ? c.getPid({ pid: id }).then((r) => r.stats, () => undefined) : undefined,
  ]);
  if (stats === undefined) throw new Error(`the server sent no stats for ${kind} ${id}`);
  if (style === "json") return console.log(JSON.stringify(messageToJson(TaskStatsSchema, stats)));
  if (style === "all") return console.log(formatStatsTable(stats));
  const leader = task?.acTgid;
  const notes = kind === "pid"
    ? [`thread ${id}: its own counters; \`get tgid\` sums a process's threads`]
    : leader !== undefined && leader !== 0 && leader !== id
    ? [
      `process ${leader}: ${id} is one of its threads, not a process, and the kernel answers a thread's id with ` +
      `its whole process (\`get tgid ${leader}\`); ${TGID_NOTE}`,
    ]
    : [`process ${id}: ${TGID_NOTE}`];
  console.log(formatReport(stats, { notes, live: true, ...(info !== undefined && { delayacct: info.delayacct }) }));
}

// A uid-limited principal's view: GetPid, GetTgid and streams show only these uids' tasks.
function uidNote(uids: readonly number[]): string {
  const why = uids.length === 0
    ? "this principal's uids list is empty"
    : "other tasks are NOT_FOUND, and left out of streams";
  return `${tasksSeen(uids)} (${why})`;
}

// Without authentication callers are known by address, but counted (limits, listeners' owner) by its bucket.
function anonymousNote(principal: string): string {
  const bucket = callerBucket(principal);
  return bucket === principal
    ? ""
    : `; without authentication your limits and listeners are those of ${bucket}, shared with every caller from there`;
}

/** `taskwire info`. */
export async function infoCommand(conn: Connection, json: boolean, listeners = false): Promise<void> {
  const info = await clientFor(conn).getInfo({ listeners });
  if (json) return console.log(JSON.stringify(messageToJson(GetInfoResponseSchema, info)));
  const rows: [string, unknown][] = [
    ["source", info.source],
    ["host", info.host?.hostname ?? "(not reported)"],
    ["boot id", info.host?.bootId || "(unknown)"],
    ["machine id", info.host?.machineId || "(none)"],
    ["kernel", info.kernelRelease],
    ["server version", info.serverVersion],
    ["you are", `${info.principal} (roles: ${info.roles.join(", ") || "none"})${anonymousNote(info.principal)}`],
    ...(info.uidLimited ? [["you see", uidNote(info.uids)] as [string, unknown]] : []),
    [
      "server holds",
      info.capabilities.join(", ") ||
      // The server lists its capabilities to admins only (and to everyone with authentication off).
      (info.roles.includes("admin") ? "(no capabilities)" : "(shown to the admin role only)"),
    ],
    ["possible CPUs", info.possibleCpus],
    ["taskstats version", `${info.taskstatsVersion} (${info.taskstatsSize} bytes)`],
    [
      "delay accounting",
      info.delayacct
        ? "on"
        : "off (kernel.task_delayacct=0: I/O, swap, reclaim and other delays are zero; CPU delay is filled regardless)",
    ],
    ["watched CPUs", info.watchedCpus || "(none)"],
    ["listeners", info.listeners],
    ["streams", info.streams],
    ["records produced", info.records],
    ["kernel drops", info.kernelDrops],
    ["source discards", info.sourceDiscards],
    ["subscriber drops", info.subscriberDrops],
    ["memory budget drops", info.memoryBudgetDrops],
    ["queue default/max", `${info.defaultBuffer}/${info.maxBuffer} events`],
    ["lease", `${info.leaseMs} ms`],
    ["memory", `${formatBytes(Number(info.memoryUsed))} held of a ${formatBytes(Number(info.memoryBudget))} budget`],
    ...(info.fleet === undefined ? [] : [["fleet (NATS)", fleetNote(info.fleet)] as [string, unknown]]),
  ];
  for (const [k, v] of rows) console.log(`${k.padEnd(19)} ${escapeControls(String(v))}`);
  if (listeners) printListeners(info.listenerDetails);
}

const UNSENT_WHY = "their loss marker fit in no message NATS takes: raise the NATS server's max_payload or the " +
  "stream's max message size, whichever the server's log names";

// The NATS publisher of `serve --nats`: whether it publishes, and what waits or was dropped.
function fleetNote(f: NonNullable<Awaited<ReturnType<ReturnType<typeof clientFor>["getInfo"]>>["fleet"]>): string {
  return `${f.connected ? "connected" : "DISCONNECTED"}, publishing to stream ${f.stream} as ` +
    `${f.subjectPrefix}.${f.host}.exits.*: ${f.published} event(s) published, ${f.pending} message(s) awaiting ` +
    `ack, ${f.queued} queued, ${f.dropped} dropped, ${f.retries} retried` +
    (f.unsent === 0n ? "" : `, ${f.unsent} seq(s) unsent (${UNSENT_WHY})`) +
    (f.lastError === "" ? "" : `; last error: ${f.lastError}`);
}

function printListeners(details: Awaited<ReturnType<ReturnType<typeof clientFor>["getInfo"]>>["listenerDetails"]) {
  if (details.length === 0) return console.log("\nno listeners you can see (an admin sees every principal's)");
  console.log(
    "\nlistener                              cpus        stream  queue          produced  lost(sub/budget/kernel/source)  events/s  owner",
  );
  for (const l of details) {
    console.log(
      `${escapeControls(l.listenerId).padEnd(37)} ${l.cpumask.padEnd(11)} ${(l.streaming ? "yes" : "no").padEnd(7)} ` +
        `${`${l.queueDepth}/${l.queueCapacity}`.padEnd(14)} ${String(l.produced).padStart(8)}  ` +
        `${
          `${l.lostSubscriberOverflow}/${l.lostMemoryBudget}/${l.lostKernelOverflow}/${l.lostSourceError}`.padEnd(30)
        }  ${l.eventsPerSecond.toFixed(1).padStart(8)}  ${escapeControls(l.owner)}`,
    );
  }
}
