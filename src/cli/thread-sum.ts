/**
 * A process's accounting from its threads' exit records. The kernel sends one
 * record per exiting thread (TASKSTATS_TYPE_AGGR_PID, the thread's own
 * counters) and, when a group that ever had a second thread dies, one
 * TASKSTATS_TYPE_AGGR_TGID record that holds only the group's summed delays
 * (kernel/taskstats.c: taskstats_exit sends signal->stats, which
 * fill_tgid_exit fills with delayacct_add_tsk alone). So CPU time, I/O and
 * context switches of a multithreaded process are the sum of its thread
 * records; memory high-water marks are per mm (the same in every thread),
 * so the max; the identity (comm, ppid, uid, exit status, age) is the
 * group leader's (pid == tgid). Pure.
 */
import { create } from "@bufbuild/protobuf";
import { type TaskStatsRecord, TaskStatsSchema } from "@taskwire/client";
import { TASKSTATS_FIELDS } from "../kernel/taskstats.ts";

type Stats = TaskStatsRecord;
type Values = Record<string, bigint | number | string | undefined>;

const IDENTITY = new Set([
  "version",
  "acExitcode",
  "acFlag",
  "acNice",
  "acComm",
  "acSched",
  "acUid",
  "acGid",
  "acPid",
  "acPpid",
  "acBtime",
  "acEtime",
  "acBtime64",
  "acTgid",
  "acTgetime",
  "acExeDev",
  "acExeInode",
]);
const MAX = /^hiwater|DelayMax$/;
const MIN = /DelayMin$/;

function combine(name: string, a: bigint, b: bigint): bigint {
  if (MAX.test(name)) return a > b ? a : b;
  // A zero minimum means "no delay recorded", not a zero-length delay.
  if (MIN.test(name)) return a === 0n ? b : b === 0n ? a : a < b ? a : b;
  return a + b;
}

/** The process's totals from its thread records; `leader` is the record with pid == tgid (undefined if lost). */
export function sumThreads(threads: readonly Stats[], leader: Stats | undefined): Stats {
  const out: Values = {};
  for (const { name } of TASKSTATS_FIELDS) {
    const from = IDENTITY.has(name) ? [leader ?? threads[0]] : threads;
    let acc: bigint | number | string | undefined;
    for (const t of from) {
      const v = (t as unknown as Values | undefined)?.[name];
      if (v === undefined) continue;
      acc = typeof v === "bigint" && typeof acc === "bigint" ? combine(name, acc, v) : acc ?? v;
    }
    if (acc !== undefined) out[name] = acc;
  }
  return create(TaskStatsSchema, out as Partial<Stats>);
}
