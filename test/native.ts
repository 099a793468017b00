/** Builds and runs test/native/tw-helper.c, the exit maker of the netlink tests and benchmarks. */
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

let built: string | undefined;

/** Compiles the helper once per process; throws naming the missing compiler. */
export function helperPath(): string {
  if (built !== undefined) return built;
  // From sources (test/) or compiled (dist/test/, for bench/): the C file stays in test/native.
  const src = new URL(
    import.meta.url.includes("/dist/") ? "../../test/native/tw-helper.c" : "./native/tw-helper.c",
    import.meta.url,
  ).pathname;
  const out = join(mkdtempSync(join(tmpdir(), "tw-helper-")), "tw-helper");
  try {
    execFileSync("cc", ["-O2", "-pthread", "-o", out, src], { stdio: "pipe" });
  } catch (err) {
    throw new Error(
      `cannot build test/native/tw-helper.c with cc (install gcc and libc6-dev): ${(err as Error).message}`,
    );
  }
  if (!existsSync(out)) throw new Error("cc produced no helper binary");
  return (built = out);
}

/** Runs `tw-helper args...` pinned to `cpu` (taskset execs it, so the pid is the helper's). */
export function spawnHelper(args: string[], cpu?: number): ChildProcessWithoutNullStreams {
  const bin = helperPath();
  return cpu === undefined ? spawn(bin, args) : spawn("taskset", ["-c", String(cpu), bin, ...args]);
}

/** Runs the helper to completion; resolves with its pid and stdout. */
export function runHelper(args: string[], cpu?: number): Promise<{ pid: number; stdout: string; code: number | null }> {
  const child = spawnHelper(args, cpu);
  let stdout = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve({ pid: child.pid!, stdout, code }));
  });
}

/**
 * Why the real kernel cannot be tested here (undefined when it can). With
 * TASKWIRE_REQUIRE_NETLINK=1 (.ci/run on these machines) absence is an error,
 * not a skip.
 */
export async function netlinkMissing(): Promise<string | undefined> {
  const { openNetlinkSource } = await import("../src/sources/netlink/netlink-source.ts");
  const missing = await openNetlinkSource().then(async (s) => {
    await s.close();
    return undefined;
  }, (e: Error) => e.message);
  if (missing !== undefined && process.env["TASKWIRE_REQUIRE_NETLINK"] === "1") {
    throw new Error(`TASKWIRE_REQUIRE_NETLINK=1 but ${missing}`);
  }
  return missing;
}
