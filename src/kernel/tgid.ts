/**
 * Per-thread-group accounting, following kernel/taskstats.c: a group's
 * `signal->stats` is allocated when a thread exits while others remain
 * (taskstats_tgid_alloc), each exiting thread adds its delayacct fields to it
 * (fill_tgid_exit -> delayacct_add_tsk), and when the group dies that sum is
 * sent as the TGID aggregate. TASKSTATS_CMD_GET for a tgid is that sum plus,
 * for every live thread, its delayacct fields, its elapsed time (ac_etime,
 * now less its start), its ac_utime and ac_stime, and its context switches
 * (fill_stats_for_tgid). All other fields stay zero, as the kernel sends them:
 * both structs start zeroed (kmem_cache_zalloc, memset), so a field the
 * kernel has is 0 in a group record, never absent.
 * On stats vectors (stats-vector.ts): the sum is touched on every thread exit.
 * Pure: no I/O.
 */
import { createStatsVector, SLOT, type StatsVector } from "./stats-vector.ts";
import { DELAY_CLASSES, TASKSTATS_VERSION, type TaskStatsField } from "./taskstats.ts";

type U64Field = Extract<TaskStatsField, `${string}Total` | `${string}Count` | `${string}Max` | `${string}Min`>;

/** Fields delayacct_add_tsk() adds (the CPU run totals and every delay class). */
export const DELAYACCT_SUMS: readonly U64Field[] = [
  "cpuRunRealTotal",
  "cpuScaledRunRealTotal",
  "cpuRunVirtualTotal",
  ...DELAY_CLASSES.flatMap((c) => [`${c}Count`, `${c}DelayTotal`] as U64Field[]),
];
const MAXES = DELAY_CLASSES.map((c) => `${c}DelayMax` as U64Field);
const MINS = DELAY_CLASSES.map((c) => `${c}DelayMin` as U64Field);
const SWITCHES = ["nvcsw", "nivcsw"] as const;
/** What fill_stats_for_tgid() adds of each live thread beside delays and switches. */
const LIVE_TIMES = ["acEtime", "acUtime", "acStime"] as const;

/** The fields a group's record can hold other than zero: what delayacct_add_tsk() and fill_stats_for_tgid() touch. */
export const TGID_FIELDS: readonly TaskStatsField[] = [
  ...DELAYACCT_SUMS,
  ...MAXES,
  ...MINS,
  ...SWITCHES,
  ...LIVE_TIMES,
];

const slots = (fields: readonly TaskStatsField[]) => Int32Array.from(fields, (f) => SLOT[f]);
const SUM_SLOTS = slots(DELAYACCT_SUMS),
  MAX_SLOTS = slots(MAXES),
  MIN_SLOTS = slots(MINS),
  LIVE_SUM_SLOTS = slots([...SWITCHES, ...LIVE_TIMES]);

/** A zeroed struct taskstats, the way kmem_cache_zalloc() hands one out: every field zero (comm empty), the version set. */
export function zeroGroupStats(): StatsVector {
  const v = createStatsVector();
  v.values.fill(0);
  v.values[SLOT.version] = TASKSTATS_VERSION;
  v.comm = "";
  return v;
}

// An unset field counts as zero, as in the kernel's zeroed struct.
const at = (v: Float64Array, i: number): number => (v[i]! === v[i]! ? v[i]! : 0);

/** delayacct_add_tsk(into, from): sums, max of maxima, min of the non-zero minima. */
export function addDelayacct(into: StatsVector, from: StatsVector): void {
  const a = into.values, b = from.values;
  for (const i of SUM_SLOTS) a[i] = at(a, i) + at(b, i);
  for (const i of MAX_SLOTS) a[i] = Math.max(at(a, i), at(b, i));
  for (const i of MIN_SLOTS) {
    const x = at(a, i), y = at(b, i);
    a[i] = y !== 0 && (x === 0 || y < x) ? y : x;
  }
}

/** fill_stats_for_tgid()'s per-live-thread step: delays, elapsed and CPU times, context switches. */
export function addLiveThread(into: StatsVector, thread: StatsVector): void {
  addDelayacct(into, thread);
  for (const i of LIVE_SUM_SLOTS) into.values[i] = at(into.values, i) + at(thread.values, i);
}
