/**
 * kernel.task_delayacct (off by default since Linux 5.14): the delay fields
 * of struct taskstats are zero while it is off, and tasks started before it
 * was switched on keep zero delays (their task->delays were never set up).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { readCapabilities } from "../../sys/capabilities.ts";

const PATH = "/proc/sys/kernel/task_delayacct";

/** Delay accounting cannot be switched on from this process; the message says what to do instead. */
export class DelayacctError extends Error {
  override readonly name = "DelayacctError";
}

/** Turns delay accounting on; returns a function that restores the old value. */
export function enableDelayacct(): { was: boolean; restore: () => void } {
  let old: string;
  try {
    old = readFileSync(PATH, "utf8").trim();
  } catch {
    throw new DelayacctError(
      `${PATH} does not exist: this kernel predates the switch (5.14); boot with "delayacct" instead`,
    );
  }
  if (old === "1") return { was: true, restore: () => {} };
  try {
    writeFileSync(PATH, "1\n");
  } catch (err) {
    throw new DelayacctError(cannotWrite(err as NodeJS.ErrnoException));
  }
  return { was: false, restore: () => writeFileSync(PATH, `${old}\n`) };
}

// Two kernel checks guard the write: /proc/sys files allow writing only to euid 0
// (proc_sys_permission -> test_perm; CAP_DAC_OVERRIDE does not count: EACCES), and
// sysctl_delayacct() wants CAP_SYS_ADMIN (EPERM). A dedicated user holding only
// CAP_NET_ADMIN passes neither, so the sysctl is set before taskwire starts.
function cannotWrite(err: NodeJS.ErrnoException): string {
  const code = err.code ?? err.message;
  const instead = "Set it before starting taskwire instead (as root: sysctl -w kernel.task_delayacct=1, " +
    "or kernel.task_delayacct = 1 in /etc/sysctl.d/) and drop --enable-delayacct";
  if (code === "EROFS") {
    return `cannot turn on delay accounting: ${PATH} is read-only here (/proc/sys mounted read-only, as in a container); ` +
      "set kernel.task_delayacct=1 on the host before starting taskwire and drop --enable-delayacct";
  }
  const euid = process.geteuid?.();
  const admin = readCapabilities().includes("CAP_SYS_ADMIN") ? "holding" : "without";
  const self = euid === undefined ? "" : ` (this process is uid ${euid}, ${admin} CAP_SYS_ADMIN)`;
  return `cannot turn on delay accounting: writing ${PATH} failed with ${code}; ` +
    `the kernel lets only uid 0 holding CAP_SYS_ADMIN change it${self}. ${instead}`;
}
