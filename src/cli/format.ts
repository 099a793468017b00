/** Human-readable renderings of stats and events for the CLI (getdelays-style). */
import type { TaskStats } from "../gen/taskwire/kernel/v1/taskstats_pb.ts";
import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import { type ExitEvent, LossReason } from "../gen/taskwire/v1/taskstats_pb.ts";
import { FIELD_BY_KERNEL_NAME } from "../kernel/taskstats.ts";

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

/** A wait(2) status as the kernel stores it in ac_exitcode. */
export function describeExit(status: number): string {
  const sig = status & 0x7f;
  if (sig === 0) return `exit ${(status >> 8) & 0xff}`;
  return `signal ${sig}${status & 0x80 ? " (core)" : ""}`;
}

function ms(ns: bigint | undefined): string {
  return ns === undefined ? "-" : `${(Number(ns) / 1e6).toFixed(3)}ms`;
}

function secs(us: bigint | undefined): string {
  return us === undefined ? "-" : `${(Number(us) / 1e6).toFixed(3)}s`;
}

function bytes(n: bigint | undefined): string {
  if (n === undefined) return "-";
  const v = Number(n);
  if (v >= 1 << 30) return `${(v / (1 << 30)).toFixed(1)}GiB`;
  if (v >= 1 << 20) return `${(v / (1 << 20)).toFixed(1)}MiB`;
  if (v >= 1 << 10) return `${(v / (1 << 10)).toFixed(1)}KiB`;
  return `${v}B`;
}

/** Every field of a record, one per line: name, value, unit. Unset fields say so. */
export function formatStatsTable(stats: TaskStats): string {
  const rows = [...FIELD_BY_KERNEL_NAME].map(([kernel, spec]) => {
    const v = stats[spec.name];
    return [
      kernel,
      v === undefined ? "(not in this kernel's struct)" : String(v),
      v === undefined ? "" : unitOf(kernel),
    ];
  });
  const w = Math.max(...rows.map((r) => r[0]!.length));
  return rows.map(([k, v, u]) => `${k!.padEnd(w)}  ${v}${u ? ` ${u}` : ""}`).join("\n");
}

/** One line for an exit or loss, like getdelays -l prints per record. */
export function formatEvent(ev: ExitEvent): string {
  const at = ev.event.case === "exit" ? ev.event.value.receivedAt : undefined;
  const head = `${at === undefined ? "" : `${clock(at)} `}seq ${ev.seq} cpu ${ev.cpu}`;
  if (ev.event.case === "lost") {
    const l = ev.event.value;
    return `${head} LOST ${l.count} event(s), seq ${l.firstSeq}-${l.lastSeq}: ${
      LossReason[l.reason]?.toLowerCase().replace(/_/g, " ") ?? l.reason
    }`;
  }
  if (ev.event.case !== "exit") return `${head} (unknown event)`;
  const { pid, tgid, pidStats: s, tgidStats: g } = ev.event.value;
  const line =
    `${head} pid ${pid} tgid ${tgid} comm ${JSON.stringify(s?.acComm ?? "")} ${describeExit(s?.acExitcode ?? 0)}` +
    ` utime ${secs(s?.acUtime)} stime ${secs(s?.acStime)} cpu-delay ${ms(s?.cpuDelayTotal)} blkio-delay ${
      ms(s?.blkioDelayTotal)
    }` +
    ` read ${bytes(s?.readBytes)} write ${bytes(s?.writeBytes)} csw ${s?.nvcsw ?? "-"}/${s?.nivcsw ?? "-"}`;
  if (g === undefined) return line;
  return `${line}\n  group ${tgid}: cpu-delay ${ms(g.cpuDelayTotal)} blkio-delay ${ms(g.blkioDelayTotal)} cpu-run ${
    ms(g.cpuRunRealTotal)
  }`;
}

/** A receive time as local time of day to the millisecond, like exitsnoop's TIME column. */
function clock(at: Timestamp): string {
  const d = timestampDate(at);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
