/**
 * A task's accounting in getdelays-like sections (CPU, delays by class, I/O,
 * memory, context switches): `get`'s summary and `run`'s report.
 */
import { exitStatusText, type TaskStatsRecord } from "@taskwire/client";
import { DELAY_CLASSES } from "../kernel/taskstats.ts";
import { bytes, ms, quoted, secs } from "./format.ts";

type Stats = TaskStatsRecord;
type DelayClass = typeof DELAY_CLASSES[number];

const CLASS_NAMES: Record<DelayClass, string> = {
  cpu: "cpu (runqueue)",
  blkio: "block I/O",
  swapin: "swap-in",
  freepages: "reclaim",
  thrashing: "thrashing",
  compact: "compaction",
  wpcopy: "wp-copy",
  irq: "IRQ",
};

/**
 * Why a tgid record looks half empty. kernel/taskstats.c fill_stats_for_tgid
 * starts from the group's exited-thread sums (signal->stats, which only
 * delayacct_add_tsk fills) or zeroes, then adds each live thread's delays,
 * elapsed time, utime/stime and context switches, and sets only `version`:
 * comm stays blank and pid, ppid, uid, memory and I/O stay 0 by design. The
 * TASKSTATS_TYPE_AGGR_TGID record sent when a multithreaded group exits is
 * signal->stats itself: its delays only.
 */
export const TGID_NOTE =
  "a tgid record (kernel/taskstats.c fill_stats_for_tgid): the kernel sums delays, CPU time, elapsed time (per thread, so not the process's age) and context switches over the threads; comm is blank and pid, uid, memory and I/O are 0 by design";

/** The identity line: comm, ids, how it ended, when it started, how long it ran. */
function identity(s: Stats, live: boolean): string {
  // A live task has no exit status yet: the kernel's 0 there means nothing.
  const status = live
    ? "  status running"
    : s.acExitcode === undefined
    ? ""
    : `  status ${exitStatusText(s.acExitcode)}`;
  const started = s.acBtime64 === undefined || s.acBtime64 === 0n
    ? ""
    : `  started ${new Date(Number(s.acBtime64) * 1000).toISOString()}`;
  return `comm ${quoted(s.acComm)}  pid ${s.acPid ?? "-"}  tgid ${s.acTgid ?? "-"}  ppid ${s.acPpid ?? "-"}  uid ${
    s.acUid ?? "-"
  }  gid ${s.acGid ?? "-"}${status}${started}  elapsed ${secs(s.acEtime)}`;
}

function cpu(s: Stats): string {
  // kernel/delayacct.c: cpu_run_real_total is utime + stime (tick-sampled), cpu_run_virtual_total sum_exec_runtime.
  return `CPU      user ${secs(s.acUtime)}  system ${secs(s.acStime)}  on-CPU ${
    ms(s.cpuRunVirtualTotal)
  } (sum_exec_runtime; user and system are tick samples)  run delay: cpu below`;
}

function delayRow(s: Stats, c: DelayClass): string {
  const r = s as unknown as Record<string, bigint | undefined>;
  const count = r[`${c}Count`], total = r[`${c}DelayTotal`];
  const avg = count === undefined || total === undefined || count === 0n ? undefined : Number(total) / Number(count);
  const cells = [String(count ?? "-"), ms(total), ms(avg), ms(r[`${c}DelayMax`]), ms(r[`${c}DelayMin`])];
  return `         ${CLASS_NAMES[c].padEnd(15)}${cells.map((x) => x.padStart(13)).join("")}`;
}

function delays(s: Stats): string[] {
  const head = `DELAYS   ${"class".padEnd(15)}${
    ["count", "total", "average", "max", "min"].map((x) => x.padStart(13)).join("")
  }`;
  return [head, ...DELAY_CLASSES.map((c) => delayRow(s, c))];
}

function io(s: Stats): string {
  return `I/O      storage read ${bytes(s.readBytes)}  written ${bytes(s.writeBytes)}  cancelled ${
    bytes(s.cancelledWriteBytes)
  }  |  read() ${bytes(s.readChar)} in ${s.readSyscalls ?? "-"} calls  write() ${bytes(s.writeChar)} in ${
    s.writeSyscalls ?? "-"
  } calls (these four rounded down to a multiple of 1,024 by the kernel)`;
}

function memory(s: Stats): string {
  const kb = (v: bigint | undefined) => (v === undefined ? "-" : bytes(v * 1024n));
  return `MEMORY   peak RSS ${kb(s.hiwaterRss)}  peak VM ${kb(s.hiwaterVm)}  minor faults ${
    s.acMinflt ?? "-"
  }  major faults ${s.acMajflt ?? "-"}`;
}

/** What a report says beside the stats. */
export interface ReportOptions {
  /** Lines shown under the identity, each in parentheses. */
  readonly notes?: readonly string[];
  /** A live task's (GetPid, GetTgid): no exit status. */
  readonly live?: boolean;
  /** The server's kernel.task_delayacct: false says that the delays read 0 because of it. */
  readonly delayacct?: boolean;
}

/** The report: identity, CPU, delays (count, total, average, max, min per class), I/O, memory, context switches. */
export function formatReport(s: Stats, o: ReportOptions = {}): string {
  const notes = [
    ...(o.notes ?? []),
    ...(o.delayacct === false ? ["delay accounting is off on the server's kernel: every delay below reads 0"] : []),
  ];
  return [
    identity(s, o.live === true),
    ...notes.map((n) => `  (${n})`),
    cpu(s),
    ...delays(s),
    io(s),
    memory(s),
    `CONTEXT  voluntary ${s.nvcsw ?? "-"}  involuntary ${s.nivcsw ?? "-"}`,
  ].join("\n");
}
