/** Human-readable renderings of stats and events for the CLI (getdelays- and exitsnoop-style). */
import { exitStatusText, type HostedExitEvent, LossReason, type Lost, type TaskStatsRecord } from "@taskwire/client";
import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import { FIELD_BY_KERNEL_NAME } from "../kernel/taskstats.ts";
import { escapeControls } from "../log/logger.ts";

const UNITS: [RegExp, string][] = [
  [/_delay_(total|max|min)$|^cpu_(run_real|run_virtual|scaled_run_real)_total$/, "ns"],
  [/^ac_(etime|utime|stime|utimescaled|stimescaled|tgetime)$/, "us"],
  [/^ac_btime(64)?$/, "s since epoch"],
  [/^hiwater_/, "KB"],
  [/^(coremem|virtmem)$/, "MB-usec"],
  [/_(char|bytes)$/, "bytes"],
];

function unitOf(name: string): string {
  return UNITS.find(([re]) => re.test(name))?.[1] ?? "";
}

/** The tasks a uid-limited principal sees (GetInfo's `uids`), as the CLI says it: "only the tasks of uids 33, 1000". */
export function tasksSeen(uids: readonly number[]): string {
  return uids.length === 0 ? "no task" : `only the tasks of uid${uids.length === 1 ? "" : "s"} ${uids.join(", ")}`;
}

/** A nanosecond total as milliseconds ("-" when the record lacks it). */
export function ms(ns: bigint | number | undefined): string {
  return ns === undefined ? "-" : `${(Number(ns) / 1e6).toFixed(3)}ms`;
}

/** A microsecond total as seconds. */
export function secs(us: bigint | number | undefined): string {
  return us === undefined ? "-" : `${(Number(us) / 1e6).toFixed(3)}s`;
}

/** A byte count with a binary unit. */
export function bytes(n: bigint | number | undefined): string {
  if (n === undefined) return "-";
  const v = Number(n);
  if (v >= 1 << 30) return `${(v / (1 << 30)).toFixed(1)}GiB`;
  if (v >= 1 << 20) return `${(v / (1 << 20)).toFixed(1)}MiB`;
  if (v >= 1 << 10) return `${(v / (1 << 10)).toFixed(1)}KiB`;
  return `${v}B`;
}

/** An elapsed time in microseconds, compact: 850us, 12.3ms, 4.20s, 3m12s, 2h05m. */
export function age(us: bigint | undefined): string {
  if (us === undefined) return "-";
  const s = Number(us) / 1e6;
  if (s < 0.001) return `${Number(us)}us`;
  if (s < 1) return `${(s * 1000).toFixed(1)}ms`;
  if (s < 60) return `${s.toFixed(2)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** A comm (or any name a local user chose) quoted and escaped for the terminal. */
export function quoted(text: string | undefined): string {
  return escapeControls(JSON.stringify(text ?? ""));
}

// ac_nice is task_nice() (-20..19) stored in a u8 (kernel/tsacct.c bacct_add_tsk): 246 is -10.
function niceOf(u8: number): number {
  return u8 > 127 ? u8 - 256 : u8;
}

/** Every field of a record, one per line: name, value, unit. Unset fields say so. */
export function formatStatsTable(stats: TaskStatsRecord): string {
  const rows = [...FIELD_BY_KERNEL_NAME].map(([kernel, spec]) => {
    const v = stats[spec.name];
    const text = v === undefined
      ? "(not in this kernel's struct)"
      : typeof v === "string"
      ? quoted(v)
      : kernel === "ac_nice"
      ? String(niceOf(Number(v)))
      : String(v);
    return [kernel, text, v === undefined ? "" : unitOf(kernel)];
  });
  const w = Math.max(...rows.map((r) => r[0]!.length));
  return rows.map(([k, v, u]) => `${k!.padEnd(w)}  ${v}${u ? ` ${u}` : ""}`).join("\n");
}

const LOSS_WHY: Record<LossReason, string> = {
  [LossReason.UNSPECIFIED]: "reason not given",
  [LossReason.SUBSCRIBER_OVERFLOW]:
    "subscriber overflow: this listener's queue was full (read faster or raise --buffer)",
  [LossReason.MEMORY_BUDGET]:
    "memory budget: the server's memory budget was full and this principal held its share of it (read faster, hold fewer listeners or smaller buffers, or ask the operator to raise serve --memory-budget)",
  [LossReason.KERNEL_OVERFLOW]: "kernel overflow: the kernel dropped records (netlink socket buffer full)",
  [LossReason.SOURCE_ERROR]:
    "source error: the server read records it could not decode or pass on (a server bug: see its log, and report it)",
  [LossReason.RETENTION]: "retention: no longer retained when the stream resumed",
  [LossReason.RESTART]: "restart: the server restarted and the listener was registered again",
};

const FLEET_GAP =
  "not in the NATS stream (its limits discarded them before this consumer read them, or they did not arrive within the reorder wait)";

/** A loss marker: how many, which seqs, and why (the CPU only where it means something: a kernel overflow or source error). */
export function formatLoss(seq: bigint, cpu: number, l: Lost): string {
  const count = l.countUnknown ? "an unknown number of" : String(l.count);
  const range = l.countUnknown ? `after seq ${l.firstSeq - 1n}` : `seq ${l.firstSeq}-${l.lastSeq}`;
  const onCpu = l.reason === LossReason.KERNEL_OVERFLOW || l.reason === LossReason.SOURCE_ERROR;
  const where = onCpu ? ` on cpu ${cpu}` : "";
  return `LOST ${count} event(s)${where}, ${range}: ${LOSS_WHY[l.reason] ?? `reason ${l.reason}`} (at seq ${seq})`;
}

/**
 * One line for an exit or loss, like exitsnoop and getdelays -l together:
 * time, host (fleet), cpu, pid, ppid, tgid, uid, comm, exit status, age,
 * CPU time, CPU and I/O delay, peak RSS, I/O bytes, context switches.
 */
export function formatEvent(ev: HostedExitEvent, showHost = false): string {
  const host = showHost && ev.host !== undefined ? `${escapeControls(ev.host)} ` : "";
  if (ev.event.case === "lost") {
    const l = ev.event.value;
    // From the fleet, RETENTION is watchFleet's own gap: seqs the JetStream stream never gave this consumer.
    return showHost && l.reason === LossReason.RETENTION
      ? `${host}LOST ${l.count} event(s), seq ${l.firstSeq}-${l.lastSeq}: ${FLEET_GAP}`
      : `${host}${formatLoss(ev.seq, ev.cpu, l)}`;
  }
  if (ev.event.case !== "exit") return `${host}seq ${ev.seq} (an event kind this CLI does not know)`;
  const { pid, tgid, pidStats: s, tgidStats: g, receivedAt } = ev.event.value;
  const at = receivedAt === undefined ? "" : `${clock(receivedAt)} `;
  const status = s?.acExitcode === undefined ? "exit ?" : exitStatusText(s.acExitcode);
  const line = `${at}${host}cpu ${ev.cpu} pid ${pid} ppid ${s?.acPpid ?? "-"} tgid ${tgid} uid ${s?.acUid ?? "-"} ` +
    `comm ${s?.acComm === undefined ? "-" : quoted(s.acComm)} ${status} age ${age(s?.acEtime)} ` +
    `cpu ${secs(_sum(s?.acUtime, s?.acStime))} cpu-delay ${ms(s?.cpuDelayTotal)} io-delay ${ms(s?.blkioDelayTotal)} ` +
    `rss ${s?.hiwaterRss === undefined ? "-" : bytes(s.hiwaterRss * 1024n)} ` +
    `read ${bytes(s?.readBytes)} write ${bytes(s?.writeBytes)} csw ${s?.nvcsw ?? "-"}/${
      s?.nivcsw ?? "-"
    } seq ${ev.seq}`;
  if (g === undefined) return line;
  return `${line}\n  process ${tgid} ended (last thread): cpu-delay ${ms(g.cpuDelayTotal)} io-delay ${
    ms(g.blkioDelayTotal)
  } cpu-run ${ms(g.cpuRunRealTotal)} summed over its threads`;
}

function _sum(a: bigint | undefined, b: bigint | undefined): bigint | undefined {
  return a === undefined || b === undefined ? undefined : a + b;
}

/** A receive time as local time of day to the millisecond, like exitsnoop's TIME column. */
export function clock(at: Timestamp): string {
  const d = timestampDate(at);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
