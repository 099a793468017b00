/**
 * One thread's CPU time from /proc: the reader worker names its thread id
 * (from the /proc/thread-self link, which resolves per calling thread), and
 * the main thread reads that thread's schedstat when asked: the scheduler's
 * own count of the time it ran, in nanoseconds. The stat file's utime and
 * stime are sampled at timer ticks instead, which miscounts a thread that
 * runs for microseconds at a time (an idle reader polling on a timer read
 * 14.5 ms a second in ticks against 8 by the scheduler). Where schedstat is
 * absent (a kernel without CONFIG_SCHED_INFO) the stat file is read.
 */
import { readFileSync, readlinkSync } from "node:fs";

/**
 * USER_HZ, the unit of utime and stime in /proc stat files: 100 on every
 * architecture Node, Deno and Bun run on (the kernel fixes it for the ABI,
 * whatever CONFIG_HZ is; only alpha differs).
 */
const USER_HZ = 100;

/** The calling thread's kernel thread id, or undefined where /proc/thread-self is absent (before Linux 3.17). */
export function ownThreadId(): number | undefined {
  try {
    const m = /\/task\/(\d+)$/.exec(readlinkSync("/proc/thread-self"));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

/**
 * The CPU time of thread `tid` in this process so far, seconds (from
 * schedstat, else utime + stime); undefined when it cannot be read (the
 * thread ended).
 */
export function threadCpuSeconds(tid: number): number | undefined {
  // Before Linux 5.14 schedstat reads "0 0 0" unless schedstats or delay accounting is on: a thread asked about has run.
  const ran = parseSchedstatSeconds(readProc(`/proc/self/task/${tid}/schedstat`) ?? "");
  if (ran !== undefined && ran > 0) return ran;
  const stat = readProc(`/proc/self/task/${tid}/stat`);
  return stat === undefined ? undefined : parseStatCpuSeconds(stat);
}

function readProc(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** The time on a CPU, seconds, from a /proc schedstat line ("<run ns> <wait ns> <timeslices>"). */
export function parseSchedstatSeconds(text: string): number | undefined {
  const ns = Number(text.split(" ")[0]);
  return Number.isFinite(ns) && text.trim() !== "" ? ns / 1e9 : undefined;
}

/**
 * The fields of a /proc stat line after the parenthesized comm (which may hold spaces and parentheses): [0] is
 * field 3 (state).
 */
export function statFieldsAfterComm(text: string): string[] {
  return text.slice(text.lastIndexOf(")") + 2).split(" ");
}

/** utime + stime, seconds, from a /proc stat line (fields 14 and 15, counted after the parenthesized comm, which may hold spaces). */
export function parseStatCpuSeconds(text: string): number | undefined {
  const fields = statFieldsAfterComm(text);
  // fields[0] is field 3 (state): utime is field 14, stime 15.
  const utime = Number(fields[11]), stime = Number(fields[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / USER_HZ : undefined;
}
