/**
 * Wait statuses, decoded. The kernel's ac_exitcode is the task's exit_code as
 * wait(2) would report it (kernel/tsacct.c copies tsk->exit_code): the low 7
 * bits are the terminating signal, bit 7 says a core was dumped, and bits 8-15
 * are the exit(2) code when no signal ended the task. Low 7 bits of 0x7f are
 * no signal (Linux's end at 64): wait(2) marks a stopped task with a low byte
 * of 0x7f (the stop signal in bits 8-15) and a continued one with 0xffff.
 */

/** A decoded wait status: how the task ended (for a status no exit has, that it was stopped or continued). */
export type ExitDescription =
  | { kind: "exited"; code: number; text: string }
  | { kind: "signaled"; signal: number; signalName: string; coreDumped: boolean; text: string }
  // Not how a task ended: wait(2)'s statuses of a task stopped, or continued, which no exit record carries.
  | { kind: "stopped"; signal: number; signalName: string; text: string }
  | { kind: "continued"; text: string };

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
  return SIGNAL_NAMES[n] || `signal ${n}`; // signal 0 included: no signal has that name
}

/** The largest wait status: 16 bits (an exit code or a signal; a stop signal and 0x7f; 0xffff, continued). */
const MAX_STATUS = 0xffff;

/**
 * Decodes a wait status (an exit record's `exitcode`, a.k.a. ac_exitcode) into
 * an exit code or a signal, with a short text such as `exit 3` or
 * `signal 9 (SIGKILL)` / `signal 11 (SIGSEGV, core)`. A status no exit has
 * (an exit record never carries one) is described as wait(2) reads it, not as
 * an exit: a low byte of 0x7f is `{ kind: "stopped" }` with the stop signal
 * from bits 8-15 (`stopped by signal 19 (SIGSTOP)`), and 0xffff is
 * `{ kind: "continued" }`.
 *
 * @throws RangeError when `status` is not an integer in 0..0xffff (65535): a
 * wait status has 16 bits (kernel/exit.c keeps an exit code's low 8 bits, and
 * bits 16 and up are only ptrace's events, on a stopped task), so a larger
 * one would be read as some other status (65536 as `exit 0`). Also for a low
 * byte of 0xff other than 0xffff itself, which no wait status has.
 */
export function describeExit(status: number): ExitDescription {
  if (!Number.isInteger(status) || status < 0 || status > MAX_STATUS) {
    throw new RangeError(
      `describeExit: status must be a wait status, an integer in 0..65535 (16 bits), got ${String(status)}`,
    );
  }
  if ((status & 0xff) === 0x7f) return stopped(status >> 8);
  if (status === MAX_STATUS) return { kind: "continued", text: "continued" };
  const signal = status & 0x7f;
  if (signal === 0x7f) {
    throw new RangeError(
      `describeExit: status 0x${status.toString(16)} is no wait status: low 7 bits of 0x7f are no signal, and ` +
        "with bit 7 set only 0xffff (continued) has them",
    );
  }
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

// A stopped task's status (a low byte of 0x7f): its stop signal.
function stopped(signal: number): ExitDescription {
  const name = signalName(signal);
  return { kind: "stopped", signal, signalName: name, text: `stopped by signal ${signal} (${name})` };
}

/**
 * describeExit's text for any number, for showing a status that came from
 * elsewhere (a server, a fleet publisher) without a try: one that is no wait
 * status (describeExit's RangeError) reads `exit ? (status 65536 is no wait
 * status)`, so the line or row that shows it is still shown.
 */
export function exitStatusText(status: number): string {
  try {
    return describeExit(status).text;
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    return `exit ? (status ${String(status)} is no wait status)`;
  }
}

/** True when a wait status is anything but a clean `exit 0`. */
export function isFailedExit(status: number): boolean {
  return status !== 0;
}
