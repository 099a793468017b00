/** Runs a bench child process and talks to it over stdio: "ready" then a JSON result when stdin closes. */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";

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
