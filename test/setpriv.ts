/**
 * Running `taskwire serve` as a service manager would: as an unprivileged
 * uid holding only the capabilities asked for, as ambient capabilities,
 * switched to by setpriv (util-linux) with a clean environment. Shared by
 * test/least-privilege.test.ts and test/deploy.test.ts.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { netlinkMissing } from "./native.ts";

export const root = new URL("..", import.meta.url).pathname;
/** The built CLI (npm run build). */
export const bin = `${root}bin/taskwire.js`;
/** nobody on Debian; setpriv needs no passwd entry for it. */
export const UID = 65534;
/** CapEff/CapAmb/CapBnd of a process holding CAP_NET_ADMIN (bit 12) alone. */
export const NET_ADMIN_MASK = (1n << 12n).toString(16).padStart(16, "0");

/** What setpriv does besides switching uid: keep setuid/file capabilities from granting more (NoNewPrivileges=). */
export interface SetprivOptions {
  noNewPrivs?: boolean;
}

/**
 * setpriv's flags: uid and gid `UID`, no supplementary groups, and exactly
 * `caps` (setpriv's names: net_admin) inheritable, ambient and bounding.
 */
export function setpriv(caps: readonly string[], options: SetprivOptions = {}): string[] {
  const set = ["-all", ...caps.map((c) => `+${c}`)].join(",");
  return [
    `--reuid=${UID}`,
    `--regid=${UID}`,
    "--clear-groups",
    `--inh-caps=${set}`,
    `--ambient-caps=${set}`,
    `--bounding-set=${set}`,
    ...(options.noNewPrivs ? ["--no-new-privs"] : []),
    // HOME=/nonexistent, PATH=/usr/local/bin:/bin:/usr/bin, nothing of the test's environment
    "--reset-env",
    "--",
  ];
}

/** Why a suite running taskwire as uid `UID` cannot run here, or undefined. Throws when the build is missing. */
export async function setprivMissing(): Promise<string | undefined> {
  if (process.platform !== "linux") return `capabilities are Linux's and this is ${process.platform}`;
  if (process.getuid?.() !== 0) {
    return `switching to uid ${UID} with CAP_NET_ADMIN needs root, and this is uid ${process.getuid?.()}`;
  }
  try {
    execFileSync("setpriv", ["--version"], { stdio: "pipe" });
  } catch {
    return "setpriv is not installed (Debian and Ubuntu: apt-get install util-linux)";
  }
  const netlink = await netlinkMissing(); // throws itself under TASKWIRE_REQUIRE_NETLINK=1
  if (netlink !== undefined) return netlink;
  // A missing build is a failure, not a reason to skip: npm test builds first.
  if (!existsSync(`${root}dist/src/cli/main.js`)) throw new Error("taskwire is not built: run `npm run build` first");
  try {
    execFileSync("setpriv", [...setpriv([]), process.execPath, bin, "--version"], { cwd: "/", stdio: "pipe" });
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? "").trim();
    return `uid ${UID} cannot run ${bin} (the checkout must be readable by all users): ${stderr}`;
  }
  return undefined;
}

/** A `taskwire serve` process and everything it wrote to stderr. */
export interface Served {
  readonly url: string;
  readonly child: ChildProcess;
  stderr(): string;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

/** Runs `command` and resolves once it says where it listens; rejects with its stderr if it exits first. */
export async function serve(command: readonly string[], cwd: string): Promise<Served> {
  const child = spawn(command[0]!, command.slice(1), { cwd, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  // "close", not "exit": by then stderr has been read to its end.
  const exited = new Promise<number | null>((r) => child.once("close", (code) => r(code)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
      const m = /on (http:\/\/127\.0\.0\.1:\d+) with /.exec(stderr);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`${command.join(" ")} exited ${code}: ${stderr}`)));
  });
  return {
    url,
    child,
    stderr: () => stderr,
    stop: async () => {
      child.kill("SIGTERM");
      return await exited;
    },
  };
}

/** Runs `command` to its end (killed after 30 s); resolves with its exit code, stdout and stderr. */
export function run(
  command: readonly string[],
  cwd = "/",
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(command[0]!, command.slice(1), { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  return new Promise((resolve) =>
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    })
  );
}

/** The Uid and capability lines of a process's /proc status. */
export function procStatus(pid: number): { uid: string; capEff: string; capAmb: string; capBnd: string } {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, "m").exec(text)![1]!.trim();
  return { uid: field("Uid"), capEff: field("CapEff"), capAmb: field("CapAmb"), capBnd: field("CapBnd") };
}
