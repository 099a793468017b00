/**
 * Wait statuses, decoded. The kernel's ac_exitcode is the task's exit_code as
 * wait(2) would report it (kernel/tsacct.c copies tsk->exit_code): the low 7
 * bits are the terminating signal, bit 7 says a core was dumped, and bits 8-15
 * are the exit(2) code when no signal ended the task.
 */

/** A decoded wait status: how the task ended. */
export type ExitDescription =
  | { kind: "exited"; code: number; text: string }
  | { kind: "signaled"; signal: number; signalName: string; coreDumped: boolean; text: string };

const SIGNAL_NAMES: readonly string[] = [
  "",
  "SIGHUP",
  "SIGINT",
  "SIGQUIT",
  "SIGILL",
  "SIGTRAP",
  "SIGABRT",
  "SIGBUS",
  "SIGFPE",
  "SIGKILL",
  "SIGUSR1",
  "SIGSEGV",
  "SIGUSR2",
  "SIGPIPE",
  "SIGALRM",
  "SIGTERM",
  "SIGSTKFLT",
  "SIGCHLD",
  "SIGCONT",
  "SIGSTOP",
  "SIGTSTP",
  "SIGTTIN",
  "SIGTTOU",
  "SIGURG",
  "SIGXCPU",
  "SIGXFSZ",
  "SIGVTALRM",
  "SIGPROF",
  "SIGWINCH",
  "SIGIO",
  "SIGPWR",
  "SIGSYS",
];

/** The Linux name of signal `n` (x86/arm numbering), `SIGRTMIN+k` for real-time signals. */
export function signalName(n: number): string {
  if (n >= 34 && n <= 64) return `SIGRTMIN+${n - 34}`;
  return SIGNAL_NAMES[n] ?? `signal ${n}`;
}

/**
 * Decodes a wait status (an exit record's `exitcode`, a.k.a. ac_exitcode) into
 * an exit code or a signal, with a short text such as `exit 3` or
 * `signal 9 (SIGKILL)` / `signal 11 (SIGSEGV, core)`.
 *
 * @throws RangeError when `status` is not an integer in 0..0xffffffff.
 */
export function describeExit(status: number): ExitDescription {
  if (!Number.isInteger(status) || status < 0 || status > 0xffffffff) {
    throw new RangeError(`describeExit: status must be an integer in 0..4294967295, got ${String(status)}`);
  }
  const signal = status & 0x7f;
  if (signal === 0) {
    const code = (status >> 8) & 0xff;
    return { kind: "exited", code, text: `exit ${code}` };
  }
  const coreDumped = (status & 0x80) !== 0;
  const name = signalName(signal);
  return {
    kind: "signaled",
    signal,
    signalName: name,
    coreDumped,
    text: `signal ${signal} (${name}${coreDumped ? ", core" : ""})`,
  };
}

/** True when a wait status is anything but a clean `exit 0`. */
export function isFailedExit(status: number): boolean {
  return status !== 0;
}
