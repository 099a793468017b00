/**
 * Runs bench child processes and talks to them over stdio: "ready" then a
 * JSON result when stdin closes (startChild), or a ready line, then a JSON
 * line answering each command line (startLineChild).
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { createInterface } from "node:readline";

export interface Child {
  readonly proc: ChildProcessWithoutNullStreams;
  /** Closes stdin and resolves with the JSON line the child prints. */
  finish<T>(): Promise<T>;
}

/** Starts `node <script> args...` (compiled bench script) and waits for its "ready" line. */
export async function startChild(script: URL, args: string[]): Promise<Child> {
  const proc = spawn(process.execPath, [script.pathname, ...args]);
  let out = "", err = "";
  proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    proc.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("ready\n")) resolve();
    });
    proc.once("exit", (code) => reject(new Error(`${script.pathname} exited ${code} before it was ready: ${err}`)));
  });
  return {
    proc,
    finish<T>() {
      return new Promise<T>((resolve, reject) => {
        proc.once("close", () => {
          const line = out.split("\n").filter((l) => l.startsWith("{")).pop();
          line ? resolve(JSON.parse(line) as T) : reject(new Error(`no result from ${script.pathname}: ${err}`));
        });
        proc.stdin.end();
      });
    },
  };
}

/** A child answering each command line with a JSON line. */
export interface LineChild {
  readonly proc: ChildProcessWithoutNullStreams;
  /** Sends `line`; resolves with the JSON line it answers, parsed. */
  ask<T>(line: string): Promise<T>;
  /** Closes stdin; resolves with the last JSON line printed. */
  end<T>(): Promise<T | undefined>;
}

// How a child's exit reads: its code, or its signal and (for the real-time watchdog's) what sent it.
function exitReason(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal === "SIGXCPU") {
    return `was killed by SIGXCPU (the kernel sends it to a real-time thread that runs past RLIMIT_RTTIME without ` +
      `blocking: the bench's watchdog for a livelock)`;
  }
  return signal === null ? `exited ${code}` : `was killed by ${signal}`;
}

/** Where a line child runs: its working directory, and variables added to this process's environment. */
export interface LineChildOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** How long it may take to say it is ready before it is killed and the start fails (default 120 s). */
  readyMs?: number;
}

/**
 * Starts `bin args...` and waits for the first line `readyWhen` accepts
 * (returned with the child); a line starting "failed" before it, or an exit,
 * rejects with the child's words.
 */
export function startLineChild(
  bin: string,
  args: string[],
  readyWhen: (line: string) => boolean,
  o: LineChildOptions = {},
): Promise<[LineChild, string]> {
  const proc = spawn(bin, args, {
    ...(o.cwd !== undefined && { cwd: o.cwd }),
    ...(o.env !== undefined && { env: { ...process.env, ...o.env } }),
  });
  let err = "", last: string | undefined, gone: Error | undefined;
  const waiters: { resolve(line: string): void; reject(err: Error): void }[] = [];
  proc.stderr.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const p: LineChild = {
    proc,
    // A child that has exited rejects what was asked of it (and all that is asked after), never leaves it pending.
    ask: <T>(line: string) =>
      new Promise<T>((resolve, reject) => {
        if (gone !== undefined) return reject(gone);
        waiters.push({ resolve: (l) => resolve(JSON.parse(l) as T), reject });
        proc.stdin.write(`${line}\n`);
      }),
    end: <T>() =>
      new Promise<T | undefined>((resolve) => {
        const result = () => resolve(last === undefined ? undefined : (JSON.parse(last) as T));
        if (proc.exitCode !== null || proc.signalCode !== null) return result();
        proc.once("close", result);
        proc.stdin.end();
      }),
  };
  // A write to a child that has just exited fails with EPIPE: the exit is what is reported (below).
  proc.stdin.on("error", () => {});
  return new Promise((resolve, reject) => {
    let ready = false;
    // A child that never says it is ready (stuck, not spinning: the watchdog would not see it) fails its start.
    const readyMs = o.readyMs ?? 120_000;
    const late = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`${bin} ${args.join(" ")} did not say it was ready in ${readyMs / 1000} s: ${err}`));
    }, readyMs);
    createInterface({ input: proc.stdout }).on("line", (line) => {
      if (!ready) {
        if (line.startsWith("failed")) clearTimeout(late), proc.kill(), reject(new Error(`${bin}: ${line}`));
        if (readyWhen(line)) (ready = true), clearTimeout(late), resolve([p, line]);
        return;
      }
      if (line.startsWith("{")) (last = line), waiters.shift()?.resolve(line);
    });
    // "close": after its last line was read.
    proc.once("close", (code, signal) => {
      clearTimeout(late);
      gone = new Error(`${bin} ${args.join(" ")} ${exitReason(code, signal)}: ${err}`);
      if (!ready) reject(gone);
      for (const w of waiters.splice(0)) w.reject(gone);
    });
  });
}
