/**
 * Per-thread-group accounting, following kernel/taskstats.c: a group's
 * `signal->stats` is allocated when a thread exits while others remain
 * (taskstats_tgid_alloc), each exiting thread adds its delayacct fields to it
 * (fill_tgid_exit -> delayacct_add_tsk), and when the group dies that sum is
 * sent as the TGID aggregate. TASKSTATS_CMD_GET for a tgid is that sum plus
 * every live thread's delayacct fields and context switches
 * (fill_stats_for_tgid). All other fields stay zero, as the kernel sends them.
 * Pure: no I/O.
 */
import type { TaskStats } from "../gen/taskwire/kernel/v1/taskstats_pb.ts";
import { DELAY_CLASSES, TASKSTATS_VERSION, type TaskStatsField } from "./taskstats.ts";

type U64Field = Extract<TaskStatsField, `${string}Total` | `${string}Count` | `${string}Max` | `${string}Min`>;

/** Fields delayacct_add_tsk() adds (the CPU run totals and every delay class). */
export const DELAYACCT_SUMS: readonly U64Field[] = [
  "cpuRunRealTotal", "cpuScaledRunRealTotal", "cpuRunVirtualTotal",
  ...DELAY_CLASSES.flatMap((c) => [`${c}Count`, `${c}DelayTotal`] as U64Field[]),
];
const MAXES = DELAY_CLASSES.map((c) => `${c}DelayMax` as U64Field);
const MINS = DELAY_CLASSES.map((c) => `${c}DelayMin` as U64Field);

/** The fields a group's sum carries: what delayacct_add_tsk() and fill_stats_for_tgid() touch. */
export const TGID_FIELDS: readonly U64Field[] = [...DELAYACCT_SUMS, ...MAXES, ...MINS, "nvcsw" as U64Field, "nivcsw" as U64Field];

/**
 * A zeroed struct taskstats, the way kmem_cache_zalloc() hands one out. One
 * literal on purpose: a group's sum is added to on every thread exit and
 * copied when the group dies, and an object filled by computed property
 * names falls into V8's slow dictionary mode (copies took microseconds).
 * test/tgid.test.ts checks it holds exactly TGID_FIELDS.
 */
export function zeroTaskStats(): TaskStats {
  return {
    $typeName: "taskwire.kernel.v1.TaskStats", version: TASKSTATS_VERSION,
    cpuRunRealTotal: 0n, cpuScaledRunRealTotal: 0n, cpuRunVirtualTotal: 0n,
    cpuCount: 0n, cpuDelayTotal: 0n, cpuDelayMax: 0n, cpuDelayMin: 0n,
    blkioCount: 0n, blkioDelayTotal: 0n, blkioDelayMax: 0n, blkioDelayMin: 0n,
    swapinCount: 0n, swapinDelayTotal: 0n, swapinDelayMax: 0n, swapinDelayMin: 0n,
    freepagesCount: 0n, freepagesDelayTotal: 0n, freepagesDelayMax: 0n, freepagesDelayMin: 0n,
    thrashingCount: 0n, thrashingDelayTotal: 0n, thrashingDelayMax: 0n, thrashingDelayMin: 0n,
    compactCount: 0n, compactDelayTotal: 0n, compactDelayMax: 0n, compactDelayMin: 0n,
    wpcopyCount: 0n, wpcopyDelayTotal: 0n, wpcopyDelayMax: 0n, wpcopyDelayMin: 0n,
    irqCount: 0n, irqDelayTotal: 0n, irqDelayMax: 0n, irqDelayMin: 0n,
    nvcsw: 0n, nivcsw: 0n,
  };
}

function get(s: TaskStats, f: TaskStatsField): bigint {
  const v = s[f];
  return typeof v === "bigint" ? v : 0n;
}

/** delayacct_add_tsk(into, from): sums, max of maxima, min of the non-zero minima. */
export function addDelayacct(into: TaskStats, from: TaskStats): void {
  const rec = into as unknown as Record<string, bigint>;
  for (const f of DELAYACCT_SUMS) rec[f] = get(into, f) + get(from, f);
  for (const f of MAXES) if (get(from, f) > get(into, f)) rec[f] = get(from, f);
  for (const f of MINS) {
    const a = get(into, f), b = get(from, f);
    if (b !== 0n && (a === 0n || b < a)) rec[f] = b;
  }
}

/** fill_stats_for_tgid()'s per-live-thread step: delays plus context switches. */
export function addLiveThread(into: TaskStats, thread: TaskStats): void {
  addDelayacct(into, thread);
  const rec = into as unknown as Record<string, bigint>;
  rec["nvcsw"] = get(into, "nvcsw") + get(thread, "nvcsw");
  rec["nivcsw"] = get(into, "nivcsw") + get(thread, "nivcsw");
}

/** A copy of a struct, as memcpy() of signal->stats makes one. */
export function copyTaskStats(s: TaskStats): TaskStats {
  return { ...s };
}
