/**
 * kernel.task_delayacct (off by default since Linux 5.14): the delay fields
 * of struct taskstats are zero while it is off, and tasks started before it
 * was switched on keep zero delays (their task->delays were never set up).
 */
import { readFileSync, writeFileSync } from "node:fs";

const PATH = "/proc/sys/kernel/task_delayacct";

/** Turns delay accounting on; returns a function that restores the old value. */
export function enableDelayacct(): { was: boolean; restore: () => void } {
  let old: string;
  try {
    old = readFileSync(PATH, "utf8").trim();
  } catch {
    throw new Error(`${PATH} does not exist: this kernel predates the switch (5.14); boot with "delayacct" instead`);
  }
  if (old === "1") return { was: true, restore: () => {} };
  try {
    writeFileSync(PATH, "1\n");
  } catch (err) {
    throw new Error(`cannot write ${PATH} (${(err as Error).message}); run as root or set the sysctl yourself`);
  }
  return { was: false, restore: () => writeFileSync(PATH, `${old}\n`) };
}
