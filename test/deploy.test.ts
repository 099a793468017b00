/**
 * deploy/: the systemd unit, its environment file, the sysusers.d and
 * sysctl.d files, and the Containerfile. Their settings are read from the
 * files themselves and checked against the real CLI and kernel: the unit's
 * ExecStart and the image's CMD are run as they would be (an unprivileged
 * uid holding exactly the capabilities the file grants, no-new-privs), and
 * the reasons the Containerfile gives for --net=host and --pid=host are shown
 * on the running kernel. systemd-analyze verifies the unit (systemd need not
 * be PID 1). The image itself is not built here: no container runtime.
 *
 * The unit's User= (taskwire) has no passwd entry on a test machine; uid
 * 65534 stands in for it: the kernel checks capabilities, not the uid.
 */
import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { createTaskwireClient } from "@taskwire/client";
import { afterAll, describe, expect, it } from "vitest";
import { collectExits, eventually, sleep } from "./helpers.ts";
import { helperPath, runHelper } from "./native.ts";
import { MALLOC_HUGE_PAGES, MALLOC_TUNABLES, thpMode } from "../src/sys/malloc-pages.ts";
import { bin, NET_ADMIN_MASK, procStatus, root, run, serve, setpriv, setprivMissing, UID } from "./setpriv.ts";

const deploy = `${root}deploy/`;
const tmp = mkdtempSync(join(tmpdir(), "tw-deploy-"));
chmodSync(tmp, 0o755); // the token file in it is read by uid 65534
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A unit file's `key=value` lines by section, in order (a key may repeat). */
function parseUnit(text: string): Map<string, [string, string][]> {
  const sections = new Map<string, [string, string][]>();
  let current: [string, string][] = [];
  for (const line of text.split("\n").map((l) => l.trim())) {
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const section = /^\[(\w+)\]$/.exec(line);
    if (section) sections.set(section[1]!, current = []);
    else current.push([line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]);
  }
  return sections;
}

const unit = parseUnit(readFileSync(`${deploy}taskwire.service`, "utf8"));
/** The node and the script the unit's ExecStart names. */
const UNIT_NODE = "/usr/bin/node";
const UNIT_SCRIPT = "/usr/local/lib/node_modules/taskwire/bin/taskwire.js";
const service = unit.get("Service") ?? [];
const one = (key: string): string | undefined => service.findLast(([k]) => k === key)?.[1];

/** `TASKWIRE_OPTS` of deploy/taskwire.env, split at whitespace as systemd splits an unbraced $VAR. */
function envOptions(): string[] {
  const m = /^TASKWIRE_OPTS="([^"]*)"$/m.exec(readFileSync(`${deploy}taskwire.env`, "utf8"));
  if (m === null) throw new Error('deploy/taskwire.env sets no TASKWIRE_OPTS="..." line');
  return m[1]!.split(/\s+/).filter(Boolean);
}

/** The Containerfile's instructions of the final stage: continuation lines joined. */
function finalStage(): { instruction: string; args: string }[] {
  const text = readFileSync(`${deploy}Containerfile`, "utf8").replace(/\\\n\s*/g, " ");
  const lines = text.split("\n").filter((l) => l.trim() !== "" && !l.trimStart().startsWith("#"));
  const all = lines.map((l) => ({ instruction: /^\s*(\w+)/.exec(l)![1]!, args: l.replace(/^\s*\w+\s*/, "") }));
  return all.slice(all.findLastIndex((i) => i.instruction === "FROM"));
}

/** The flags `taskwire serve --help` lists. */
const helpFlags = (): Set<string> => {
  const help = execFileSync(process.execPath, [bin, "serve", "--help"], { encoding: "utf8" });
  return new Set(help.match(/--[a-z0-9-]+/g));
};
/** `args` with --port's value replaced by 0 (a free port). */
const anyPort = (args: string[]): string[] => args.map((a, i) => (args[i - 1] === "--port" ? "0" : a));
/** CAP_NET_ADMIN -> net_admin, setpriv's name. */
const setprivName = (cap: string): string => cap.replace(/^CAP_/, "").toLowerCase();

function which(tool: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "pipe" });
    return true;
  } catch {
    return false;
  }
}
const required = process.env["TASKWIRE_REQUIRE_NETLINK"] === "1";
/** Skips naming the missing tool, or fails under TASKWIRE_REQUIRE_NETLINK=1 (CI installs it). */
function toolMissing(tool: string, pkg: string): string | undefined {
  if (which(tool)) return undefined;
  const why = `${tool} is not installed (Debian: apt-get install ${pkg})`;
  if (required) throw new Error(`TASKWIRE_REQUIRE_NETLINK=1 but ${why}`);
  return why;
}

describe("deploy/taskwire.service, read as systemd would", () => {
  it("runs as a dedicated user holding only CAP_NET_ADMIN, with NoNewPrivileges and ProtectSystem=strict", () => {
    expect(one("AmbientCapabilities")).toBe("CAP_NET_ADMIN");
    expect(one("CapabilityBoundingSet")).toBe("CAP_NET_ADMIN");
    expect(one("NoNewPrivileges")).toBe("yes");
    expect(one("ProtectSystem")).toBe("strict");
    expect([one("User"), one("Group"), one("DynamicUser")]).toEqual(["taskwire", "taskwire", undefined]);
    // Each of these would break the server (the unit's comments say why): they must stay off.
    for (const key of ["MemoryDenyWriteExecute", "PrivateUsers", "PrivateNetwork", "ProtectProc", "ProcSubset"]) {
      expect(one(key), key).toBeUndefined();
    }
    // No System V IPC or POSIX message queues shared with the host (taskwire uses neither).
    expect([one("PrivateIPC"), one("RemoveIPC")]).toEqual(["yes", "yes"]);
  });

  it("ExecStart runs the installed package's bin with an absolute node, not PATH's; each flag in deploy/taskwire.env is one serve takes", () => {
    // bin/taskwire.js starts with `#!/usr/bin/env node`: run by path, it would take whatever node PATH finds first.
    expect(one("ExecStart")).toBe(`${UNIT_NODE} ${UNIT_SCRIPT} serve $TASKWIRE_OPTS`);
    const pkg = JSON.parse(readFileSync(`${root}package.json`, "utf8")) as {
      name: string;
      bin: Record<string, string>;
    };
    expect(UNIT_SCRIPT).toBe(`/usr/local/lib/node_modules/${pkg.name}/${pkg.bin["taskwire"]}`);
    expect(readFileSync(`${root}${pkg.bin["taskwire"]}`, "utf8")).toMatch(/^#!\/usr\/bin\/env node\n/);
    expect(one("EnvironmentFile")).toBe("-/etc/taskwire/taskwire.env");
    const known = helpFlags();
    const flags = envOptions().filter((a) => a.startsWith("--"));
    expect(flags).toContain("--max-connections");
    for (const flag of flags) expect(known, flag).toContain(flag);
  });

  it("LimitNOFILE leaves --max-connections its descriptors plus the 128 the server keeps for itself", () => {
    const args = envOptions();
    const maxConnections = Number(args[args.indexOf("--max-connections") + 1]);
    expect(Number(one("LimitNOFILE"))).toBeGreaterThanOrEqual(maxConnections + 128 + 64); // 64: open at start
  });

  const analyzeMissing = process.platform === "linux" ? toolMissing("systemd-analyze", "systemd") : "not Linux";
  it.skipIf(analyzeMissing !== undefined)(
    `systemd-analyze verify accepts it, and its exposure score stays at most 3.0${
      analyzeMissing ? ` SKIPPED: ${analyzeMissing}` : ""
    }`,
    async () => {
      // verify insists ExecStart's binary exists: point it at this checkout's, in a copy of the unit.
      const copy = join(tmp, "taskwire.service");
      const text = readFileSync(`${deploy}taskwire.service`, "utf8");
      const execStart = `ExecStart=${UNIT_NODE} ${UNIT_SCRIPT} `;
      expect(text).toContain(execStart);
      writeFileSync(copy, text.replace(execStart, `ExecStart=${process.execPath} ${bin} `));
      const verified = await run(["systemd-analyze", "verify", copy]);
      expect(verified, verified.stderr).toMatchObject({ code: 0, stderr: "" });
      const security = await run(["systemd-analyze", "security", "--offline=yes", copy]);
      const score = /Overall exposure level for taskwire\.service: ([\d.]+)/.exec(security.stdout);
      expect(score, security.stdout + security.stderr).not.toBeNull();
      expect(Number(score![1])).toBeLessThanOrEqual(3);
    },
    30_000,
  );

  const sysusersMissing = process.platform === "linux" ? toolMissing("systemd-sysusers", "systemd") : "not Linux";
  it.skipIf(sysusersMissing !== undefined)(
    `deploy/sysusers.d makes the unit's User and Group: a system user without a login shell${
      sysusersMissing ? ` SKIPPED: ${sysusersMissing}` : ""
    }`,
    async () => {
      const image = join(tmp, "sysroot");
      execFileSync("mkdir", ["-p", `${image}/usr/lib/sysusers.d`, `${image}/etc`]);
      writeFileSync(`${image}/usr/lib/sysusers.d/taskwire.conf`, readFileSync(`${deploy}sysusers.d/taskwire.conf`));
      const made = await run(["systemd-sysusers", `--root=${image}`]);
      expect(made.code, made.stderr).toBe(0);
      const [name, , uid, gid, , home, shell] = readFileSync(`${image}/etc/passwd`, "utf8").trim().split(":");
      expect([name, home, shell]).toEqual([one("User"), "/", "/usr/sbin/nologin"]);
      expect(Number(uid)).toBeLessThan(1000);
      expect(readFileSync(`${image}/etc/group`, "utf8")).toMatch(new RegExp(`^${one("Group")}:x:${gid}:`, "m"));
    },
    30_000,
  );

  it.skipIf(process.platform !== "linux")(
    "deploy/sysctl.d sets the key --enable-delayacct writes, which exists",
    () => {
      const text = readFileSync(`${deploy}sysctl.d/50-taskwire.conf`, "utf8");
      const settings = [...text.matchAll(/^([\w.]+)\s*=\s*(\S+)\s*$/gm)].map((m) => [m[1], m[2]]);
      expect(settings).toEqual([["kernel.task_delayacct", "1"]]);
      expect(existsSync(`/proc/sys/${settings[0]![0]!.replaceAll(".", "/")}`)).toBe(true);
    },
  );
});

const stage = finalStage();
const last = (instruction: string) => stage.findLast((i) => i.instruction === instruction)?.args;

describe("deploy/Containerfile, read as a container runtime would", () => {
  it("builds and runs on one LTS line of the official node image (an even major past Node 20's end of life)", () => {
    const text = readFileSync(`${deploy}Containerfile`, "utf8");
    const froms = [...text.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]!);
    expect(froms).toHaveLength(2);
    const majors = froms.map((f) => {
      const m = /^docker\.io\/library\/node:(\d+)-[a-z]+-slim(@sha256:[0-9a-f]{64})?$/.exec(f);
      expect(m, f).not.toBeNull();
      return Number(m![1]);
    });
    expect(new Set(majors).size).toBe(1); // the build's node is the runtime's
    expect(majors[0]! % 2).toBe(0); // only even majors become LTS
    expect(majors[0]!).toBeGreaterThan(20);
    // Pinned by tag here; the file says a digest pin is set at release.
    expect(text).toMatch(/pin\s+(?:#\s+)?both FROM lines by digest/);
  });

  it("does not advise running as uid 0 under Docker", () => {
    const text = readFileSync(`${deploy}Containerfile`, "utf8");
    expect(text).not.toMatch(/run it as `--user 0:0/);
    expect(text).toMatch(/Do NOT\s+#?\s*answer that with `--user 0:0`/);
  });

  it("runs as a non-root USER, `taskwire` from /usr/local/bin (the image's own node), with CMD's flags serve takes", () => {
    const user = last("USER")!;
    expect(user).toMatch(/^\d+:\d+$/); // numeric, so runtimes can tell it is not root without the image's passwd
    expect(Number(user.split(":")[0])).toBeGreaterThan(0);
    expect(JSON.parse(last("ENTRYPOINT")!)).toEqual(["taskwire"]);
    expect(last("RUN")).toMatch(/npm install -g --omit=dev /); // node images' prefix is /usr/local
    const cmd = JSON.parse(last("CMD")!) as string[];
    expect(cmd[0]).toBe("serve");
    const known = helpFlags();
    for (const flag of cmd.filter((a) => a.startsWith("--"))) expect(known, flag).toContain(flag);
  });
});

const missing = await setprivMissing();
if (missing !== undefined && required) throw new Error(`TASKWIRE_REQUIRE_NETLINK=1 but ${missing}`);
const suite = missing === undefined ? describe : describe.skip;

/** An auth file granting `token` every role, readable by uid 65534. */
function writeAuthFile(file: string, token: string): void {
  const hash = createHash("sha256").update(token).digest("hex");
  const roles = ["read", "subscribe", "admin"];
  writeFileSync(file, JSON.stringify({ principals: { ops: { roles } }, tokens: { [hash]: "ops" } }), { mode: 0o644 });
}

/** An exit on the first possible CPU reaches a SubscribeExits stream of `url`. */
async function expectExitRecord(url: string, token: string | undefined, comm: string): Promise<void> {
  const client = createTaskwireClient(url, token === undefined ? {} : { token });
  const cpu = Number((await client.getInfo({})).possibleCpus.split(/[-,]/)[0]);
  const sub = await collectExits(client, { cpumask: String(cpu) });
  const child = await runHelper(["exit", comm, "0"], cpu);
  const mine = () => sub.events.some((e) => e.event.case === "exit" && e.event.value.pid === child.pid);
  await eventually(mine, 10_000);
  await sub.stop();
}

suite(missing === undefined ? "deploy/ run as written" : `deploy/ run as written SKIPPED: ${missing}`, () => {
  const caps = [one("AmbientCapabilities")!].map(setprivName);
  const asUnit = setpriv(caps, { noNewPrivs: one("NoNewPrivileges") === "yes" });

  it(
    "the unit's command, uid, capabilities and LimitNOFILE serve the kernel, and ExecReload re-reads the token file",
    async () => {
      helperPath();
      const auth = join(tmp, "auth.json");
      writeAuthFile(auth, "tw_first");
      const limit = `--nofile=${one("LimitNOFILE")}`;
      const args = [...anyPort(envOptions()), "--token-file", auth];
      const server = await serve(
        ["prlimit", limit, "setpriv", ...asUnit, process.execPath, bin, "serve", ...args],
        "/",
      );
      try {
        const self = procStatus(server.child.pid!); // prlimit and setpriv exec: the pid is the server's
        expect(self.uid).toBe(`${UID}\t${UID}\t${UID}\t${UID}`);
        expect([self.capEff, self.capAmb, self.capBnd]).toEqual([NET_ADMIN_MASK, NET_ADMIN_MASK, NET_ADMIN_MASK]);
        expect(server.stderr()).not.toMatch(/lowered to/); // LimitNOFILE fits --max-connections
        expect((await createTaskwireClient(server.url, { token: "tw_first" }).getInfo({})).capabilities)
          .toEqual(["CAP_NET_ADMIN"]);
        await expectExitRecord(server.url, "tw_first", "tw-deploy-unit");

        writeAuthFile(auth, "tw_second");
        const reload = one("ExecReload")!.replace("$MAINPID", String(server.child.pid)).split(" ");
        expect((await run(reload)).code).toBe(0);
        await eventually(() => server.stderr().includes(`SIGHUP: reloaded ${auth}`));
        await expect(createTaskwireClient(server.url, { token: "tw_first" }).getInfo({})).rejects.toThrow();
        await createTaskwireClient(server.url, { token: "tw_second" }).getInfo({});
      } finally {
        expect(await server.stop(), server.stderr()).toBe(0);
      }
      // Only the audit lines of the revoked token's calls warn.
      expect(server.stderr()).not.toMatch(/warning: (?!audit: unauthenticated .*method=(GetInfo|Deregister) )/);
    },
    60_000,
  );

  it(
    "under ProtectKernelTunables (read-only /proc/sys), --enable-delayacct exits 1 saying to set the sysctl",
    async () => {
      const script = 'mount --bind -o ro /proc/sys /proc/sys && exec "$@"';
      const command = ["unshare", "--mount", "sh", "-c", script, "sh", "setpriv", ...asUnit, process.execPath, bin];
      const { code, stderr } = await run([...command, "serve", ...anyPort(envOptions()), "--enable-delayacct"]);
      if (readFileSync("/proc/sys/kernel/task_delayacct", "utf8").trim() === "1") return; // nothing to write: it serves
      expect(code).toBe(1);
      expect(stderr).toMatch(/task_delayacct is read-only here .* set kernel\.task_delayacct=1 on the host/);
      expect(stderr.trim().split("\n")).toHaveLength(1);
    },
    30_000,
  );

  it(
    "the image's CMD as a non-root user with only NET_ADMIN (podman's --cap-add, ambient) serves the kernel",
    async () => {
      const cmd = anyPort(JSON.parse(last("CMD")!) as string[]);
      const server = await serve([
        "setpriv",
        ...setpriv(["net_admin"], { noNewPrivs: true }),
        process.execPath,
        bin,
        ...cmd,
      ], "/");
      try {
        expect((await createTaskwireClient(server.url).getInfo({})).capabilities).toEqual(["CAP_NET_ADMIN"]);
        await expectExitRecord(server.url, undefined, "tw-deploy-cmd");
      } finally {
        expect(await server.stop(), server.stderr()).toBe(0);
      }
    },
    60_000,
  );
});

const nsMissing = missing ?? toolMissing("unshare", "util-linux") ?? toolMissing("nsenter", "util-linux") ??
  toolMissing("ip", "iproute2");
const nsSuite = nsMissing === undefined ? describe : describe.skip;

nsSuite(`why the container needs --net=host and --pid=host${nsMissing ? ` SKIPPED: ${nsMissing}` : ""}`, () => {
  it("in its own network namespace, no exit record arrives (or, on older kernels, the family is absent)", async () => {
    helperPath();
    const inNetns = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"];
    const server = await serve([...inNetns, process.execPath, bin, "serve", "--source", "netlink", "--port", "0"], "/")
      .catch((err: Error) => err);
    if (server instanceof Error) {
      // Kernels whose TASKSTATS family lacks .netnsok: genetlink answers ENOENT outside init_net.
      expect(server.message).toMatch(/--source netlink: /);
      return;
    }
    try {
      await eventually(() => /not in the initial network namespace .* no exit will ever arrive/.test(server.stderr()));
      const nsenter = ["nsenter", `--net=/proc/${server.child.pid}/ns/net`, process.execPath, bin];
      const watch = spawn(nsenter[0]!, [...nsenter.slice(1), "watch", "--cpus", "0", "--url", server.url]);
      let out = "";
      watch.stdout.on("data", (d: Buffer) => (out += d.toString()));
      watch.stderr.on("data", (d: Buffer) => (out += d.toString()));
      await eventually(() => /watching CPUs 0 /.test(out), 10_000); // GETs and Register work here
      for (let i = 0; i < 10; i++) await runHelper(["exit", "tw-deploy-netns", "0"], 0);
      await sleep(1000);
      watch.kill("SIGINT");
      // The kernel unicast each exit to the listener's port id in init_net: none reached this namespace.
      expect(out).not.toMatch(/tw-deploy-netns/);
    } finally {
      await server.stop();
    }
  }, 60_000);

  it("in its own pid namespace, registering fails and GetPid finds only that namespace's tasks", async () => {
    const inPidns = ["unshare", "--pid", "--fork", "--kill-child=SIGTERM", "--mount-proc"];
    const server = await serve([...inPidns, process.execPath, bin, "serve", "--source", "netlink", "--port", "0"], "/");
    // unshare --fork ignores SIGTERM while it waits: signal the server, its child, itself.
    const unsharePid = server.child.pid!;
    const serverPid = Number(readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, "utf8").trim());
    try {
      const client = createTaskwireClient(server.url);
      const err = await client.register({ cpumask: "0" }).then(() => undefined, (e: unknown) => e);
      // add_del_listener() answers EINVAL to a caller outside init_pid_ns.
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.Unavailable);
      expect((err as ConnectError).message).toMatch(/register CPU 0: EINVAL/);
      await expect(client.getPid({ pid: process.pid })).rejects.toThrow(/no live task/);
      const init = (await client.getPid({ pid: 1 })).stats!; // pid 1 there is the server itself
      expect([init.acPid, init.acComm]).toEqual([1, "node"]);
    } finally {
      process.kill(serverPid, "SIGTERM");
      await server.stop();
    }
  }, 30_000);
});

describe("the malloc heap in transparent huge pages, kept for reuse, as every way of starting the server sets it", () => {
  const TUNABLES = MALLOC_TUNABLES;

  it("npm start, deno task start, the unit and the image set the same glibc tunables (the tasks keep an operator's own)", () => {
    const scripts = (JSON.parse(readFileSync(`${root}package.json`, "utf8")) as { scripts: Record<string, string> })
      .scripts;
    expect(scripts["start"]).toBe(`GLIBC_TUNABLES=\${GLIBC_TUNABLES-${TUNABLES}} node bin/taskwire.js serve`);
    expect(scripts["bench"]).toContain(`GLIBC_TUNABLES=\${GLIBC_TUNABLES-${TUNABLES}} node dist/bench/run.js`);
    // deno task's shell has no ${VAR-default}: the tasks run sh for it.
    const tasks = (JSON.parse(readFileSync(`${root}deno.json`, "utf8")) as { tasks: Record<string, string> }).tasks;
    for (const task of ["start", "serve"]) {
      expect(tasks[task], task).toContain(
        `sh -c 'GLIBC_TUNABLES=\${GLIBC_TUNABLES-${TUNABLES}} exec node_modules/deno/`,
      );
    }
    expect(one("Environment")).toBe(`GLIBC_TUNABLES=${TUNABLES}`);
    expect(finalStage()).toContainEqual({ instruction: "ENV", args: `GLIBC_TUNABLES=${TUNABLES}` });
  });

  it("puts what Node's ArrayBuffers take from malloc in huge pages on this kernel, and nothing without it", (ctx) => {
    const mode = thpMode();
    if (mode !== "madvise" && mode !== "always") {
      ctx.skip(`transparent huge pages are "${mode}" on this kernel: the tunable has nothing to ask for`);
    }
    // 64 MiB in 64 KiB buffers, the size of the server's slabs: malloc's heap, not an mmap each.
    const probe = "const keep = []; for (let i = 0; i < 1024; i++) keep.push(new Uint8Array(65536).fill(1));" +
      'console.log(/AnonHugePages:\\s+(\\d+)/.exec(require("fs").readFileSync("/proc/self/smaps_rollup", "utf8"))[1]);';
    const hugeKb = (tunables: string) =>
      Number(execFileSync(process.execPath, ["-e", probe], { env: { ...process.env, GLIBC_TUNABLES: tunables } }));
    expect(hugeKb(TUNABLES)).toBeGreaterThanOrEqual(32 * 1024);
    if (mode === "madvise") expect(hugeKb("")).toBe(0);
  });

  it("keeps freed slabs' heap for the next ones: far fewer page faults than huge pages alone", (ctx) => {
    const mode = thpMode();
    if (mode !== "madvise" && mode !== "always") ctx.skip(`transparent huge pages are "${mode}" on this kernel`);
    // The stats vectors' slabs as an exit storm makes them (568 KB each, a few dozen alive, the rest freed as the
    // collector finds them): without the thresholds glibc trims each one freed at the heap's top and the next is
    // faulted in afresh.
    const probe = "const keep = []; const r0 = process.resourceUsage().minorPageFault;" +
      "for (let i = 0; i < 1500; i++) { keep.push(new Float64Array(72704).fill(NaN)); if (keep.length > 40) keep.shift(); }" +
      "console.log(process.resourceUsage().minorPageFault - r0);";
    const faults = (tunables: string) =>
      Number(execFileSync(process.execPath, ["-e", probe], { env: { ...process.env, GLIBC_TUNABLES: tunables } }));
    const kept = faults(TUNABLES);
    const trimmed = faults(MALLOC_HUGE_PAGES);
    expect(kept, `${kept} page faults with ${TUNABLES}, ${trimmed} with ${MALLOC_HUGE_PAGES}`).toBeLessThan(
      trimmed / 4,
    );
  });
});
