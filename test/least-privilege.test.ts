/**
 * `taskwire serve` with least privilege: as uid 65534 (no passwd entry
 * needed) holding only CAP_NET_ADMIN, as an ambient capability, switched to
 * by setpriv (util-linux) with a clean environment, as a service manager
 * would start it. On Node (the built CLI: run `npm run build` first), Deno
 * and Bun (the TypeScript sources), against the real kernel. Without
 * CAP_NET_ADMIN the server refuses to start and says why.
 *
 * Needs root (to switch uid and hand out the capability), setpriv and the
 * kernel's TASKSTATS family; where one is absent the suite skips naming it,
 * and with TASKWIRE_REQUIRE_NETLINK=1 (CI on these machines) absence fails.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createTaskwireClient } from "@taskwire/client";
import { describe, expect, it } from "vitest";
import { DEFAULT_SOCKET_BUFFER } from "../src/sources/netlink/netlink-source.ts";
import { readerWorkerUrl } from "../src/sources/netlink/_worker-url.ts";
import { collectExits, eventually } from "./helpers.ts";
import { helperPath, netlinkMissing, runHelper } from "./native.ts";

const root = new URL("..", import.meta.url).pathname;
const bin = `${root}bin/taskwire.js`;
const UID = 65534; // nobody on Debian; setpriv needs no passwd entry for it

/** setpriv's flags: uid and gid 65534, no supplementary groups, and exactly `caps` (setpriv's names). */
function setpriv(caps: readonly string[]): string[] {
  const set = ["-all", ...caps.map((c) => `+${c}`)].join(",");
  return [
    `--reuid=${UID}`,
    `--regid=${UID}`,
    "--clear-groups",
    `--inh-caps=${set}`,
    `--ambient-caps=${set}`,
    `--bounding-set=${set}`,
    // HOME=/nonexistent, PATH=/usr/local/bin:/bin:/usr/bin, nothing of the test's environment
    "--reset-env",
    "--",
  ];
}

/** Why this suite cannot run here, or undefined. */
async function missingHere(): Promise<string | undefined> {
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

const missing = await missingHere();
if (missing !== undefined && process.env["TASKWIRE_REQUIRE_NETLINK"] === "1") {
  throw new Error(`TASKWIRE_REQUIRE_NETLINK=1 but ${missing}`);
}

/** A `taskwire serve` process and everything it wrote to stderr. */
interface Served {
  readonly url: string;
  readonly child: ChildProcess;
  stderr(): string;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

/** Runs `command` and resolves once it says where it listens; rejects with its stderr if it exits first. */
async function serve(command: readonly string[], cwd: string): Promise<Served> {
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

/** Runs `command` to its end; resolves with its exit code and stderr. */
function run(command: readonly string[], cwd = "/"): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(command[0]!, command.slice(1), { cwd, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  return new Promise((resolve) =>
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    })
  );
}

/** The Uid and capability lines of a process's /proc status. */
function procStatus(pid: number): { uid: string; capEff: string; capAmb: string; capBnd: string } {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, "m").exec(text)![1]!.trim();
  return { uid: field("Uid"), capEff: field("CapEff"), capAmb: field("CapAmb"), capBnd: field("CapBnd") };
}

const NET_ADMIN_MASK = (1n << 12n).toString(16).padStart(16, "0");
// Twice rmem_max (at least the default), so only SO_RCVBUFFORCE can set it.
const rmemMax = missing === undefined ? Number(readFileSync("/proc/sys/net/core/rmem_max", "utf8")) : 0;
const SOCKET_BUFFER = Math.min(Math.max(DEFAULT_SOCKET_BUFFER, 2 * rmemMax), 2 ** 30);
const serveArgs = [
  "serve",
  "--source",
  "netlink",
  "--host",
  "127.0.0.1",
  "--port",
  "0",
  "--socket-buffer",
  String(SOCKET_BUFFER),
];

// Each runtime's way to run `taskwire serve`: Node the built CLI from "/" (nothing read from the working
// directory); Deno and Bun the TypeScript sources from the checkout (Deno reads deno.json's imports there).
const runtimes: [name: string, command: string[], cwd: string][] = [
  ["node", [process.execPath, bin, ...serveArgs], "/"],
  ["deno", [`${root}node_modules/deno/deno`, "run", "--allow-all", `${root}src/cli/run.ts`, ...serveArgs], root],
  ["bun", [`${root}node_modules/bun/bin/bun.exe`, `${root}src/cli/run.ts`, ...serveArgs], root],
];

const suite = missing === undefined ? describe : describe.skip;
const title = missing === undefined
  ? `serve as uid ${UID} holding only CAP_NET_ADMIN`
  : `serve as uid ${UID} holding only CAP_NET_ADMIN SKIPPED: ${missing}`;

suite(title, () => {
  for (const [name, command, cwd] of runtimes) {
    it(
      `${name}: GetInfo, GetPid of a root process, and a child's exit record, with nothing but CAP_NET_ADMIN`,
      async () => {
        helperPath();
        const server = await serve(["setpriv", ...setpriv(["net_admin"]), ...command], cwd);
        let code: number | null;
        try {
          // setpriv execs the runtime, so the child's pid is the server's: it is who we asked for.
          const self = procStatus(server.child.pid!);
          expect(self.uid).toBe(`${UID}\t${UID}\t${UID}\t${UID}`);
          expect([self.capEff, self.capAmb, self.capBnd]).toEqual([NET_ADMIN_MASK, NET_ADMIN_MASK, NET_ADMIN_MASK]);
          expect(server.stderr()).toMatch(/ with \w+ [\d.]+, holding CAP_NET_ADMIN\n/);

          const client = createTaskwireClient(server.url);
          const info = await client.getInfo({});
          expect(info.source).toBe("netlink");
          expect(info.capabilities).toEqual(["CAP_NET_ADMIN"]);

          const { stats } = await client.getPid({ pid: process.pid }); // this test runs as root
          expect(stats!.acPid).toBe(process.pid);
          expect(stats!.acUid).toBe(0);

          const cpu = Number(info.possibleCpus.split(/[-,]/)[0]);
          const sub = await collectExits(client, { cpumask: String(cpu) });
          const comm = `tw-lp-${name}`;
          const child = await runHelper(["exit", comm, "3"], cpu);
          const exitOf = () =>
            sub.events.flatMap((e) =>
              e.event.case === "exit" && e.event.value.pid === child.pid ? [e.event.value] : []
            );
          await eventually(() => exitOf().length > 0, 10_000);
          await sub.stop();
          expect(exitOf()).toHaveLength(1);
          expect(exitOf()[0]!.pidStats!.acComm).toBe(comm);
          expect(exitOf()[0]!.pidStats!.acExitcode).toBe(3 << 8); // wait(2) status
          // SO_RCVBUFFORCE set a buffer past net.core.rmem_max, which plain SO_RCVBUF cannot:
          // it too needs only CAP_NET_ADMIN. (The kernel reports double what was set.)
          expect((await client.getInfo({})).socketBuffer).toBe(2 * SOCKET_BUFFER);
        } finally {
          code = await server.stop();
        }
        expect(code, server.stderr()).toBe(0);
        expect(server.stderr()).not.toMatch(/warning/); // read to its end: no start-up line warned
        expect(server.stderr()).toMatch(/SIGTERM, shutting down/);
        expect(server.stderr()).not.toMatch(/\n\s+at /); // no stack on the way out
      },
      60_000,
    );
  }

  it("without CAP_NET_ADMIN the netlink source refuses to start, naming the capability (no stack)", async () => {
    const { code, stderr } = await run(["setpriv", ...setpriv([]), process.execPath, bin, ...serveArgs]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^taskwire: --source netlink: the netlink source cannot run: .*needs CAP_NET_ADMIN/);
    expect(stderr).toMatch(/--source sim/);
    expect(stderr.trim().split("\n")).toHaveLength(1);
  }, 30_000);

  it("with no capabilities, the sim source serves and says it holds none (no warning)", async () => {
    const server = await serve(
      ["setpriv", ...setpriv([]), process.execPath, bin, "serve", "--source", "sim", "--port", "0"],
      "/",
    );
    try {
      expect(server.stderr()).toMatch(/, holding no capabilities\n/);
      const info = await createTaskwireClient(server.url).getInfo({});
      expect([info.source, info.capabilities]).toEqual(["sim", []]);
    } finally {
      await server.stop();
    }
    expect(server.stderr()).not.toMatch(/warning/);
  }, 30_000);

  it("--enable-delayacct as uid 65534 fails with what it needs and what to do instead (no stack)", async () => {
    const command = ["setpriv", ...setpriv(["net_admin"]), process.execPath, bin, ...serveArgs, "--enable-delayacct"];
    const before = readFileSync("/proc/sys/kernel/task_delayacct", "utf8").trim();
    if (before === "1") {
      // Already on (booted so, or set by an operator): nothing to write, so the server starts and says so.
      const server = await serve(command, "/");
      expect(await server.stop()).toBe(0);
      expect(server.stderr()).toMatch(/kernel\.task_delayacct was already 1/);
      return;
    }
    const { code, stderr } = await run(command);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^taskwire: cannot turn on delay accounting: writing \/proc\/sys\/kernel\/task_delayacct/);
    expect(stderr).toMatch(
      /EACCES; the kernel lets only uid 0 holding CAP_SYS_ADMIN change it \(this process is uid 65534/,
    );
    expect(stderr).toMatch(/sysctl -w kernel\.task_delayacct=1/);
    expect(stderr.trim().split("\n")).toHaveLength(1);
    expect(readFileSync("/proc/sys/kernel/task_delayacct", "utf8").trim()).toBe(before);
  }, 30_000);

  const lowPorts = missing === undefined
    ? Number(readFileSync("/proc/sys/net/ipv4/ip_unprivileged_port_start", "utf8"))
    : 0;
  it.skipIf(lowPorts <= 1)(
    `a port below ${lowPorts} (net.ipv4.ip_unprivileged_port_start) is refused naming CAP_NET_BIND_SERVICE`,
    async () => {
      const port = String(lowPorts - 1);
      const { code, stderr } = await run([
        "setpriv",
        ...setpriv(["net_admin"]),
        process.execPath,
        bin,
        "serve",
        "--source",
        "netlink",
        "--port",
        port,
      ]);
      expect(code).toBe(1);
      expect(stderr).toMatch(new RegExp(`no permission to listen on 127\\.0\\.0\\.1:${port}: .*CAP_NET_BIND_SERVICE`));
    },
    30_000,
  );

  it(
    "as root, the start-up line warns that taskwire needs only CAP_NET_ADMIN, and GetInfo lists what root holds",
    async () => {
      const server = await serve([process.execPath, bin, ...serveArgs], "/");
      try {
        const warning =
          /\ntaskwire: warning: running as root with [^;]+; taskwire needs only CAP_NET_ADMIN: see README\n/;
        await eventually(() => warning.test(server.stderr()));
        const info = await createTaskwireClient(server.url).getInfo({});
        const capEff = BigInt(`0x${procStatus(server.child.pid!).capEff}`);
        expect(info.capabilities).toContain("CAP_NET_ADMIN");
        expect(info.capabilities.length).toBe(capEff.toString(2).replaceAll("0", "").length);
      } finally {
        await server.stop();
      }
    },
    30_000,
  );
});

// Running from the TypeScript sources on Node (as vitest does), the reader worker is bundled at start.
// A user who may not write the checkout (a service user beside a root-owned install) must be able to.
it("the reader worker bundled from sources on Node is written nowhere: a data: URL whose koffi is a file URL", async () => {
  const url = await readerWorkerUrl();
  expect(url.protocol).toBe("data:");
  const code = Buffer.from(url.href.slice(url.href.indexOf(",") + 1), "base64").toString("utf8");
  expect(code).toMatch(/import\("file:\/\/\/[^"]*\/node_modules\/koffi\/[^"]+"\)/);
  expect(code).not.toMatch(/import\("koffi"\)/);
  expect(code).toMatch(/\/\/# sourceURL=file:\/\/\/.*\/reader-worker\.bundle\.mjs\n$/);
});
