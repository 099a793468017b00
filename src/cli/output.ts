/**
 * stdout for long-running commands (watch, top): a reader that goes away
 * (`taskwire watch | head -1`) ends the command quietly with status 0
 * instead of an EPIPE stack trace, after the command has cleaned up (its
 * listener deregistered).
 */

/** Where a command's lines go, and whether anyone still reads them. */
export interface Output {
  /** Writes `text` plus a newline unless the reader is gone. */
  line(text: string): void;
  /** Writes `text` as is unless the reader is gone. */
  write(text: string): void;
  /**
   * True once the reader closed the pipe. Also before the 'error' event: a
   * write into a closed pipe fails at once on Linux (pipes, files and
   * terminals are written synchronously) and marks stdout errored, but Node
   * emits the error on the next tick.
   */
  readonly closed: boolean;
  /** Whether stdout is a terminal (refreshing in place makes sense). */
  readonly isTTY: boolean;
  /** Stops watching stdout for errors. */
  dispose(): void;
}

/** Wraps process.stdout; `onClosed` runs once when the reader goes away (EPIPE). */
export function createOutput(onClosed: () => void): Output {
  const out = process.stdout;
  let closed = false;
  const onError = (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE" && err.code !== "ERR_STREAM_DESTROYED") throw err;
    if (closed) return;
    closed = true;
    onClosed();
  };
  out.on("error", onError);
  const write = (text: string) => {
    if (!closed) out.write(text);
  };
  return {
    line: (text) => write(`${text}\n`),
    write,
    get closed() {
      return closed || (out as { errored?: unknown }).errored != null;
    },
    isTTY: out.isTTY === true,
    dispose: () => out.off("error", onError),
  };
}

/** Waits until everything written so far is handed to the OS (or the reader is gone). */
export function drained(): Promise<void> {
  return new Promise((resolve) => {
    if (process.stdout.writableLength === 0) return resolve();
    process.stdout.write("", () => resolve());
  });
}

/**
 * Calls `stop` on SIGINT (Ctrl-C), SIGTERM (kill) and SIGHUP (the terminal or
 * ssh session closed): each lets a long-running command deregister its
 * listener before it exits, where the signal's default would end it at once
 * and leave the listener to its lease. Returns what removes the handlers.
 */
export function stopOnSignals(stop: () => void): () => void {
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  for (const s of signals) process.once(s, stop);
  return () => {
    for (const s of signals) process.off(s, stop);
  };
}
