/**
 * Task counts of a cgroup v2 directory, where the kernel's
 * CGROUPSTATS_CMD_GET answers EINVAL (cgroupstats_build() accepts only a
 * dentry of cgroup_fs_type, the v1 filesystem): every thread listed in its
 * cgroup.threads, by the state letter of /proc/<tid>/stat.
 */
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { setImmediate } from "node:timers";
import { CgroupNotFoundError, CgroupTooLargeError } from "../source.ts";

/** Threads counted at most per call by default. */
export const DEFAULT_CGROUP_MAX_THREADS = 65536;

/** The four counts /proc can give (not nr_io_wait). */
export interface ProcfsCounts {
  sleeping: number;
  running: number;
  stopped: number;
  uninterruptible: number;
}

/** Where to read and how much. */
export interface ProcfsCountOptions {
  /** Most threads counted; a cgroup with more is CgroupTooLargeError. */
  readonly maxThreads: number;
  /** procfs mount (default /proc). */
  readonly proc?: string;
  /** Stops the count (rejecting with the signal's reason) at the next turn of the event loop. */
  readonly signal?: AbortSignal | undefined;
}

/**
 * Each /proc state letter (fs/proc/array.c task_state_array) in the count
 * cgroupstats_build() (kernel/cgroup/cgroup-v1.c) puts it in, which switches
 * on the exact __state: TASK_RUNNING (R), TASK_INTERRUPTIBLE (S),
 * TASK_UNINTERRUPTIBLE (D), TASK_STOPPED (T). Everything else falls to its
 * default branch and is counted nowhere (only as nr_io_wait when in_iowait):
 * TASK_IDLE (I, idle kernel threads), TASK_TRACED (t), parked (P) and dead
 * (Z, X) tasks; so they are skipped here too. /proc reports a state without
 * its modifier bits, while the kernel's exact match also misses a sleeper
 * whose state carries one (TASK_FREEZABLE since Linux 6.1: nanosleep, e.g.
 * `sleep`; TASK_KILLABLE is D here), so on v1 the kernel may count fewer
 * sleepers than this would.
 */
const COUNT_OF: Readonly<Record<string, keyof ProcfsCounts>> = {
  R: "running",
  S: "sleeping",
  D: "uninterruptible",
  T: "stopped",
};

/**
 * Milliseconds of /proc reads between turns of the event loop, so a large
 * cgroup does not stall other calls. A fixed batch of 256 held the loop
 * 5-10 ms (a thread's stat costs 0.02-0.04 ms, more on a loaded host), and
 * another client's GetInfo took a median 11-14 ms during a 20,000-thread
 * count; with 1 ms slices it takes 3-4 ms, and the count alone is as fast.
 */
const SLICE_MS = 1;

/** Reads between looks at the clock. */
const CLOCK_EVERY = 16;

/** Counts the threads of the cgroup directory `dir` by state; stops at the next turn once `options.signal` aborts. */
export async function countProcfs(dir: string, options: ProcfsCountOptions): Promise<ProcfsCounts> {
  const proc = options.proc ?? "/proc";
  const { signal } = options;
  signal?.throwIfAborted();
  const tids = readThreads(`${dir}/cgroup.threads`, options.maxThreads);
  const counts: ProcfsCounts = { sleeping: 0, running: 0, stopped: 0, uninterruptible: 0 };
  let sliceEnd = performance.now() + SLICE_MS;
  for (let i = 0; i < tids.length; i++) {
    if (i % CLOCK_EVERY === 0 && performance.now() >= sliceEnd) {
      await new Promise((r) => setImmediate(r));
      signal?.throwIfAborted();
      sliceEnd = performance.now() + SLICE_MS;
    }
    const which = COUNT_OF[stateOf(proc, tids[i]!) ?? ""];
    if (which !== undefined) counts[which]++;
  }
  return counts;
}

/** The state letter of /proc/<tid>/stat: the field after the last ")" (comm may hold any byte); undefined once the thread is gone. */
export function stateOf(proc: string, tid: string): string | undefined {
  let stat: string;
  try {
    // The thread's own entry: /proc/<tid>/stat of a thread that is not its group's leader is the whole
    // group's (the kernel's do_task_stat sums every thread of the group for it), which made a count
    // quadratic in the group's size (20,000 threads: 23.7 s against 0.03 ms per thread this way).
    stat = readFileSync(`${proc}/${tid}/task/${tid}/stat`, "latin1");
  } catch {
    return undefined; // it exited since cgroup.threads was read
  }
  return stat[stat.lastIndexOf(")") + 2];
}

// A thread id is at most 7 digits (PID_MAX_LIMIT 4194304) and a newline.
const LINE_MAX = 8;

/** The tids in a cgroup.threads file, reading no more than `maxThreads` lines' worth. */
export function readThreads(file: string, maxThreads: number): string[] {
  const fd = openOrGone(file);
  try {
    return readThreadsFrom(fd, maxThreads);
  } finally {
    closeSync(fd);
  }
}

/** The tids in an open cgroup.threads file; CgroupNotFoundError once its cgroup is removed (ENODEV). */
export function readThreadsFrom(fd: number, maxThreads: number): string[] {
  const limit = (maxThreads + 1) * LINE_MAX;
  const buf = new Uint8Array(Math.min(limit, 1 << 16));
  let text = "";
  let total = 0;
  const decoder = new TextDecoder("latin1");
  for (let n; total < limit && (n = readOrGone(fd, buf, limit - total)) > 0;) {
    text += decoder.decode(buf.subarray(0, n));
    total += n;
  }
  const tids = text.split("\n").filter((t) => /^\d+$/.test(t));
  if (tids.length > maxThreads || total >= limit) {
    throw new CgroupTooLargeError(
      `the cgroup has more than ${maxThreads} threads, the most counted in one call; ask for a child cgroup`,
      maxThreads,
    );
  }
  return tids;
}

// A cgroup removed since its path was resolved: open(2) of its cgroup.threads fails with ENOENT, and a
// read of one opened before the rmdir with ENODEV (kernfs_fop_read_iter: the node is deactivated).
function gone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENODEV";
}

const REMOVED = "the cgroup was removed while it was being counted";

function openOrGone(file: string): number {
  try {
    return openSync(file, "r");
  } catch (err) {
    if (gone(err)) throw new CgroupNotFoundError(REMOVED);
    throw err;
  }
}

function readOrGone(fd: number, buf: Uint8Array, left: number): number {
  try {
    return readSync(fd, buf, 0, Math.min(buf.length, left), null);
  } catch (err) {
    if (gone(err)) throw new CgroupNotFoundError(REMOVED);
    throw err;
  }
}
