/**
 * One thread's CPU time from /proc: the reader worker names its thread id
 * (from the /proc/thread-self link, which resolves per calling thread), and
 * the main thread reads that thread's stat when asked.
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
 * utime + stime of thread `tid` in this process, seconds, from the text of
 * its /proc stat file; undefined when it cannot be read (the thread ended).
 */
export function threadCpuSeconds(tid: number): number | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  return parseStatCpuSeconds(text);
}

/** utime + stime, seconds, from a /proc stat line (fields 14 and 15, counted after the parenthesized comm, which may hold spaces). */
export function parseStatCpuSeconds(text: string): number | undefined {
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state): utime is field 14, stime 15.
  const utime = Number(fields[11]), stime = Number(fields[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / USER_HZ : undefined;
}
