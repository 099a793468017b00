/**
 * GetCgroupStats against the real kernel and real cgroups made here: a v1
 * directory (/sys/fs/cgroup/cpu, counted by CGROUPSTATS_CMD_GET) and a
 * cgroup2 one (/sys/fs/cgroup/unified, counted from /proc), with children
 * moved in; paths that leave the cgroup filesystem; the sim source; the
 * roles and uid limits; and `taskwire cgroup` (bin/taskwire.js: build first).
 */
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { performance } from "node:perf_hooks";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  CgroupStatsMethod,
  Code,
  ConnectError,
  createTaskwireClient,
  LimitExceededError,
  type TaskwireClient,
  UnsupportedError,
} from "@taskwire/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAuthenticator } from "../src/auth/authenticator.ts";
import { hashToken, newToken } from "../src/auth/tokens.ts";
import { type NetlinkSource, openNetlinkSource } from "../src/sources/netlink/netlink-source.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { parseMountinfo, resolveCgroupDir } from "../src/sources/cgroup/cgroup-path.ts";
import { CgroupNotFoundError, CgroupPathError } from "../src/sources/source.ts";
import { readThreads, readThreadsFrom } from "../src/sources/cgroup/procfs-counts.ts";
import { toConnectError } from "../src/rpc/errors.ts";
import { configureLogging } from "../src/log/logger.ts";
import type { LogRecord } from "@logtape/logtape";
import {
  encodeCgroupstatsGet,
  NetlinkFormatError,
  parseAttrs,
  parseCgroupstatsNew,
} from "../src/sources/netlink/codec.ts";
import { eventually, type Running, sleep, startServer } from "./helpers.ts";
import { netlinkMissing } from "./native.ts";

const V1 = "/sys/fs/cgroup/cpu";
const V2 = "/sys/fs/cgroup/unified";
const root = new URL("..", import.meta.url).pathname;

// This machine's layout (hybrid: v1 hierarchies beside cgroup2 at unified/); named when absent.
const layoutMissing = [V1, V2].filter((d) => !existsSync(`${d}/cgroup.procs`));
const missing = (await netlinkMissing()) ??
  (layoutMissing.length === 0 ? undefined : `no cgroup hierarchy at ${layoutMissing.join(" and ")}`);
const suite = missing === undefined ? describe : describe.skip;
const title = (t: string) => (missing === undefined ? t : `${t} SKIPPED: ${missing}`);

/** A child process moved into `cgroup`, killed and reaped by stop(). */
interface Child {
  readonly pid: number;
  stop(): Promise<void>;
}

function startChild(cmd: string, args: string[], cgroup: string): Child {
  const child: ChildProcess = spawn(cmd, args, { stdio: "ignore" });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  writeFileSync(join(cgroup, "cgroup.procs"), String(child.pid));
  return {
    pid: child.pid!,
    stop: async () => {
      child.kill("SIGKILL");
      await exited;
    },
  };
}

const fifoDir = mkdtempSync(join(tmpdir(), "taskwire-cgroup-fifo-"));
let fifos = 0;
afterAll(() => rmSync(fifoDir, { recursive: true, force: true }));

/**
 * A shell opening a FIFO no one writes: it sleeps in wait_for_partner() in
 * plain TASK_INTERRUPTIBLE, which the kernel's cgroupstats_build() counts as
 * sleeping. (`sleep` is no good on v1: nanosleep sleeps in
 * TASK_INTERRUPTIBLE|TASK_FREEZABLE since Linux 6.1, and the kernel's exact
 * match of __state counts that nowhere; so do reads of a socket, e.g. a
 * child's stdio pipe from Node, which is a socketpair.)
 */
function startSleeper(cgroup: string): Child {
  const fifo = join(fifoDir, `f${fifos++}`);
  execFileSync("mkfifo", [fifo]);
  return startChild("sh", ["-c", `exec 3< '${fifo}'`], cgroup);
}

const stateOf = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
  return stat[stat.lastIndexOf(")") + 2];
};

let made = 0;
function makeCgroup(hierarchy: string): string {
  const dir = join(hierarchy, `taskwire-test-${process.pid}-${made++}`);
  mkdirSync(dir);
  return dir;
}

// A cgroup is removable once its last task is reaped; the kernel may lag a moment behind.
async function removeCgroup(dir: string): Promise<void> {
  for (let i = 0;; i++) {
    try {
      return rmdirSync(dir);
    } catch (err) {
      if (i >= 50 || (err as NodeJS.ErrnoException).code !== "EBUSY") throw err;
      await sleep(20);
    }
  }
}

async function counts(client: TaskwireClient, path: string) {
  const r = await client.getCgroupStats({ path });
  return {
    method: r.method,
    sleeping: Number(r.nrSleeping),
    running: Number(r.nrRunning),
    stopped: Number(r.nrStopped),
    uninterruptible: Number(r.nrUninterruptible),
    ioWait: r.nrIoWait === undefined ? undefined : Number(r.nrIoWait),
  };
}

async function codeOf(call: Promise<unknown>): Promise<{ code: Code; message: string }> {
  const err = await call.then(() => undefined, (e: unknown) => e);
  if (!(err instanceof ConnectError)) throw new Error(`expected a ConnectError, got ${String(err)}`);
  return { code: err.code, message: err.rawMessage };
}

suite(title("GetCgroupStats (real kernel, real cgroups)"), () => {
  let source: NetlinkSource;
  let running: Running;
  beforeAll(async () => {
    source = await openNetlinkSource();
    running = await startServer(source);
  });
  afterAll(() => running?.close());

  it("counts a v1 cgroup with the kernel: a sleeper, then stopped; a busy loop running", async () => {
    const dir = makeCgroup(V1);
    const children: Child[] = [];
    try {
      expect(await counts(running.client, dir)).toEqual({
        method: CgroupStatsMethod.KERNEL,
        sleeping: 0,
        running: 0,
        stopped: 0,
        uninterruptible: 0,
        ioWait: 0,
      });
      const sleeper = startSleeper(dir);
      children.push(sleeper);
      await eventually(() => stateOf(sleeper.pid) === "S");
      await eventually(async () => (await counts(running.client, dir)).sleeping === 1);
      expect(await counts(running.client, dir)).toMatchObject({ running: 0, stopped: 0, ioWait: 0 });
      process.kill(sleeper.pid, "SIGSTOP");
      await eventually(async () => (await counts(running.client, dir)).stopped === 1);
      expect(await counts(running.client, dir)).toMatchObject({ sleeping: 0, running: 0 });
      children.push(startChild("sh", ["-c", "while :; do :; done"], dir));
      await eventually(async () => (await counts(running.client, dir)).running === 1);
      expect((await running.client.getCgroupStats({ path: `${dir}/` })).path).toBe(dir);
    } finally {
      for (const c of children) await c.stop();
      await removeCgroup(dir);
    }
  });

  it("counts a cgroup v2 directory from /proc (the kernel answers EINVAL), io_wait unset", async () => {
    const dir = makeCgroup(V2);
    const children: Child[] = [];
    try {
      children.push(startChild("sleep", ["30"], dir), startSleeper(dir));
      await eventually(() => children.every((c) => stateOf(c.pid) === "S"));
      expect(await counts(running.client, dir)).toEqual({
        method: CgroupStatsMethod.PROCFS,
        sleeping: 2,
        running: 0,
        stopped: 0,
        uninterruptible: 0,
        ioWait: undefined,
      });
      process.kill(children[0]!.pid, "SIGSTOP");
      await eventually(async () => (await counts(running.client, dir)).stopped === 1);
      expect(await counts(running.client, dir)).toMatchObject({ sleeping: 1, running: 0 });
      // Past --cgroup-max-threads: refused, nothing read past the limit.
      const small = await startServer(await openNetlinkSource({ cgroupMaxThreads: 1 }));
      try {
        const err = await small.client.getCgroupStats({ path: dir }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(LimitExceededError);
        expect(err).toMatchObject({ code: Code.ResourceExhausted, values: { limit: "1" } });
        expect((err as LimitExceededError).rawMessage).toMatch(/more than 1 threads.*ask for a child cgroup/);
      } finally {
        await small.close();
      }
    } finally {
      for (const c of children) await c.stop();
      await removeCgroup(dir);
    }
  });

  it("refuses paths that leave the cgroup filesystem or are no cgroup directory (INVALID_ARGUMENT)", async () => {
    const tmp = mkdtempSync(join(tmpdir(), "taskwire-cgroup-"));
    symlinkSync("/etc", join(tmp, "to-etc"));
    symlinkSync(V1, join(tmp, "to-cgroup"));
    writeFileSync(join(tmp, "file"), "");
    const bad = {
      [`${V1}/../../../etc`]: /is outside \/sys\/fs\/cgroup; pass a cgroup directory under/,
      [`${V1}/../../../../../../../proc/1/root`]: /is outside/,
      [join(tmp, "to-etc")]: /is outside/,
      [join(tmp, "to-cgroup")]: /is outside/, // only paths under /sys/fs/cgroup as written
      [join(tmp, "file")]: /is outside/,
      [`${V1}/cgroup.procs`]: /is not a directory; pass the cgroup's directory/,
      [`${V1}/cgroup.procs/x`]: /goes through a file/,
      "/sys/fs/cgroup": /not in a cgroup hierarchy \(its filesystem is tmpfs\).*hierarchies: .*cpu/,
      "sys/fs/cgroup/cpu": /is relative/,
      "": /path is empty/,
      [`${V1}/a\0b`]: /NUL/,
      [`${V1}/${"a/".repeat(3000)}`]: /6\d{3} bytes, longer than PATH_MAX allows \(4095\)/,
    };
    for (const [path, message] of Object.entries(bad)) {
      const e = await codeOf(running.client.getCgroupStats({ path }));
      expect({ path, code: Code[e.code] }).toEqual({ path, code: "InvalidArgument" });
      expect(e.message).toMatch(message);
      expect(e.message.length).toBeLessThan(1100); // a long path is clipped, not echoed whole
    }
  });

  it("refuses a symlink inside /sys/fs/cgroup that leads out, even to a missing file", async () => {
    const link = `/sys/fs/cgroup/taskwire-test-link-${process.pid}`;
    try {
      symlinkSync("/etc", link);
    } catch (err) {
      return void console.warn(`skipped: cannot make a symlink in /sys/fs/cgroup (${(err as Error).message})`);
    }
    try {
      for (const path of [link, `${link}/passwd`, `${link}/no-such-file`]) {
        const e = await codeOf(running.client.getCgroupStats({ path }));
        expect({ path, code: Code[e.code] }).toEqual({ path, code: "InvalidArgument" });
        expect(e.message).toMatch(/outside \/sys\/fs\/cgroup \(through a symlink\)/);
      }
    } finally {
      unlinkSync(link);
    }
  });

  it("answers NOT_FOUND for a missing cgroup", async () => {
    for (const path of [`${V1}/taskwire-no-such-group`, `${V2}/a/b/c`, "/sys/fs/cgroup/no-such-hierarchy"]) {
      const e = await codeOf(running.client.getCgroupStats({ path }));
      expect({ path, code: Code[e.code] }).toEqual({ path, code: "NotFound" });
      expect(e.message).toMatch(/^no cgroup directory ".*"; pass a cgroup directory under \/sys\/fs\/cgroup/);
    }
  });

  it("a cgroup removed while it is counted is NOT_FOUND, not INTERNAL (ENOENT on open, ENODEV on read)", () => {
    const dir = makeCgroup(V2);
    const fd = openSync(join(dir, "cgroup.threads"), "r");
    try {
      rmdirSync(dir);
      // kernfs deactivates the node at rmdir: a read of a file opened before it fails with ENODEV.
      expect(() => readThreadsFrom(fd, 10)).toThrow(CgroupNotFoundError);
    } finally {
      closeSync(fd);
    }
    const gone = (() => {
      try {
        readThreads(join(dir, "cgroup.threads"), 10);
      } catch (err) {
        return err;
      }
    })();
    expect(gone).toBeInstanceOf(CgroupNotFoundError);
    expect(toConnectError(gone)).toMatchObject({
      code: Code.NotFound,
      rawMessage: /removed while it was being counted/,
    });
  });

  it("needs the read role, and refuses a uid-limited principal (PERMISSION_DENIED)", async () => {
    const tokens = { reader: newToken(), team: newToken(), sub: newToken() };
    const file = join(mkdtempSync(join(tmpdir(), "taskwire-cgroup-auth-")), "auth.json");
    writeFileSync(
      file,
      JSON.stringify({
        principals: {
          reader: { roles: ["read"] },
          team: { roles: ["read"], uids: [0] },
          sub: { roles: ["subscribe"] },
        },
        tokens: Object.fromEntries(Object.entries(tokens).map(([name, t]) => [hashToken(t), name])),
      }),
    );
    const guarded = await startServer(await openNetlinkSource(), {}, {
      authenticator: createAuthenticator({ tokenFile: file }),
    });
    const as = (token: string) => createTaskwireClient(guarded.url, { token });
    try {
      expect((await as(tokens.reader).getCgroupStats({ path: V1 })).method).toBe(CgroupStatsMethod.KERNEL);
      const sub = await codeOf(as(tokens.sub).getCgroupStats({ path: V1 }));
      expect(sub).toMatchObject({ code: Code.PermissionDenied, message: /needs the "read" role/ });
      const team = await codeOf(as(tokens.team).getCgroupStats({ path: V1 }));
      expect(team).toMatchObject({ code: Code.PermissionDenied, message: /may see only its own uids' tasks/ });
      // Told apart from a missing role (which names "role") by "limited_to".
      const teamErr = await as(tokens.team).getCgroupStats({ path: V1 }).catch((e: unknown) => e);
      expect(teamErr).toMatchObject({ values: { limited_to: "uids" } });
      expect((teamErr as { values: Record<string, string> }).values["role"]).toBeUndefined();
      const anon = await codeOf(createTaskwireClient(guarded.url).getCgroupStats({ path: V1 }));
      expect(anon.code).toBe(Code.Unauthenticated);
    } finally {
      await guarded.close();
    }
  });
});

describe("GetCgroupStats on the sim source", () => {
  it("is FAILED_PRECONDITION (UnsupportedError), saying to run --source netlink", async () => {
    const running = await startServer(createSimSource({ cpus: 2, exitRate: 0 }));
    try {
      const err = await running.client.getCgroupStats({ path: V1 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnsupportedError);
      expect((err as UnsupportedError).code).toBe(Code.FailedPrecondition);
      expect((err as UnsupportedError).rawMessage).toMatch(/simulated kernel has no cgroups.*--source netlink/);
      // The request is validated before the source is asked.
      expect((await codeOf(running.client.getCgroupStats({ path: "" }))).code).toBe(Code.InvalidArgument);
    } finally {
      await running.close();
    }
  });
});

suite(title("taskwire cgroup (the built CLI)"), () => {
  let running: Running;
  beforeAll(async () => {
    if (!existsSync(`${root}dist/src/cli/main.js`)) throw new Error("dist/ is missing: run `npm run build` first");
    running = await startServer(await openNetlinkSource());
  });
  afterAll(() => running?.close());

  const cli = async (...args: string[]) => {
    const run = promisify(execFile)("node", [`${root}bin/taskwire.js`, ...args, "--url", running.url], { cwd: root });
    return run.then(({ stdout, stderr }) => ({ code: 0, out: stdout, err: stderr }), (e) => ({
      code: (e as { code: number }).code,
      out: (e as { stdout: string }).stdout,
      err: (e as { stderr: string }).stderr,
    }));
  };

  it("prints getdelays -C's line and the method, or every field as JSON", async () => {
    const dir = makeCgroup(V1);
    const sleeper = startSleeper(dir);
    try {
      await eventually(() => stateOf(sleeper.pid) === "S");
      const human = await cli("cgroup", dir);
      expect(human.code).toBe(0);
      expect(human.out).toBe(
        `sleeping 1, running 0, stopped 0, uninterruptible 0, io_wait 0\n` +
          `cgroup ${dir}: counted by the kernel (CGROUPSTATS_CMD_GET)\n`,
      );
      const json = JSON.parse((await cli("cgroup", dir, "--json")).out);
      expect(json).toEqual({
        path: dir,
        method: "CGROUP_STATS_METHOD_KERNEL",
        nr_sleeping: "1",
        nr_running: "0",
        nr_stopped: "0",
        nr_uninterruptible: "0",
        nr_io_wait: "0",
      });
      const v2 = await cli("cgroup", V2);
      expect(v2.out).toMatch(/^sleeping \d+, running \d+, stopped \d+, uninterruptible \d+, io_wait -\n.*\/proc/);
      const gone = await cli("cgroup", `${V1}/taskwire-no-such-group`);
      expect(gone).toMatchObject({ code: 1, err: /^taskwire: NotFound: no cgroup directory/ });
    } finally {
      await sleeper.stop();
      await removeCgroup(dir);
    }
  });
});

describe("cgroup paths, confined (resolveCgroupDir's root and mount table as options)", () => {
  it("reads mountinfo's device numbers and escapes", () => {
    const [m] = parseMountinfo("30 25 0:1048575 / /sys/fs/cgroup/with\\040space rw,relatime - cgroup2 cgroup2 rw\n");
    expect(m).toEqual({ dev: 0xfff000ffn, mountPoint: "/sys/fs/cgroup/with space", fstype: "cgroup2" });
  });

  it("accepts a directory on a mount the table calls cgroup2, and nothing else", () => {
    const root = mkdtempSync(join(tmpdir(), "taskwire-cgroot-"));
    mkdirSync(join(root, "group"));
    writeFileSync(join(root, "file"), "");
    const dev = statSync(root).dev;
    const [major, minor] = [(dev >>> 8) & 0xfff, (dev & 0xff) | ((dev >>> 12) & 0xfff00)];
    const table = (fstype: string) => {
      const file = join(root, `mountinfo-${fstype}`);
      writeFileSync(file, `40 1 ${major}:${minor} / ${root} rw - ${fstype} x rw\n`);
      return { root, mountinfo: file };
    };
    try {
      expect(resolveCgroupDir(`${root}/group/`, table("cgroup2"))).toEqual({
        path: join(root, "group"),
        fs: "cgroup2",
      });
      expect(resolveCgroupDir(`${root}/x/../group`, table("cgroup"))).toEqual({
        path: join(root, "group"),
        fs: "cgroup",
      });
      expect(() => resolveCgroupDir(join(root, "group"), table("tmpfs"))).toThrow(CgroupPathError);
      expect(() => resolveCgroupDir(join(root, "file"), table("cgroup2"))).toThrow(/is not a directory/);
      expect(() => resolveCgroupDir(join(root, "nope"), table("cgroup2"))).toThrow(CgroupNotFoundError);
      expect(() => resolveCgroupDir(V1, table("cgroup"))).toThrow(/is outside/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("CGROUPSTATS codec (linux/cgroupstats.h)", () => {
  it("asks with CGROUPSTATS_CMD_GET (4) and the fd as CGROUPSTATS_CMD_ATTR_FD (1), u32", () => {
    const req = encodeCgroupstatsGet(0x1c, 9, 42);
    const dv = new DataView(req.buffer);
    expect([dv.getUint32(0, true), dv.getUint16(4, true), dv.getUint32(8, true)]).toEqual([req.byteLength, 0x1c, 9]);
    expect([req[16], req[17]]).toEqual([4, 1]);
    const [fd] = parseAttrs(req.subarray(20), -1);
    expect({ type: fd!.type, value: new DataView(fd!.data.buffer, fd!.data.byteOffset).getUint32(0, true) })
      .toEqual({ type: 1, value: 42 });
  });

  it("reads struct cgroupstats from CGROUPSTATS_TYPE_CGROUP_STATS (1) of CGROUPSTATS_CMD_NEW", () => {
    const payload = new Uint8Array(4 + 4 + 40);
    const dv = new DataView(payload.buffer);
    payload[0] = 5; // CGROUPSTATS_CMD_NEW
    dv.setUint16(4, 44, true);
    dv.setUint16(6, 1, true);
    [7, 2, 1, 3, 5].forEach((v, i) => dv.setBigUint64(8 + i * 8, BigInt(v), true));
    expect(parseCgroupstatsNew(payload)).toEqual({
      sleeping: 7,
      running: 2,
      stopped: 1,
      uninterruptible: 3,
      ioWait: 5,
    });
    dv.setUint16(4, 12, true); // a struct cut short
    expect(() => parseCgroupstatsNew(payload.subarray(0, 16))).toThrow(NetlinkFormatError);
    expect(parseCgroupstatsNew(payload.subarray(0, 4))).toBeUndefined();
  });
});

/**
 * N threads asleep in pause() (state S), each on a 64 KiB stack; prints
 * "ready" once all exist and exits when stdin closes. Run through a shell
 * that first moves itself into the cgroup, so every thread is made there.
 */
const MANY_THREADS_C = `
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static void *sleeper(void *arg) { (void)arg; for (;;) pause(); return NULL; }
int main(int argc, char **argv) {
  int n = atoi(argv[1]);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  for (int i = 0; i < n; i++) {
    pthread_t t;
    if (pthread_create(&t, &attr, sleeper, NULL) != 0) { perror("pthread_create"); return 1; }
  }
  printf("ready\\n");
  fflush(stdout);
  char buf[64];
  while (read(0, buf, sizeof buf) > 0) {}
  return 0;
}
`;

/** A process with `n` sleeping threads in `cgroup`. */
async function startManyThreads(n: number, cgroup: string): Promise<Child> {
  const dir = mkdtempSync(join(tmpdir(), "taskwire-many-threads-"));
  writeFileSync(join(dir, "many.c"), MANY_THREADS_C);
  execFileSync("cc", ["-O2", "-pthread", "-o", join(dir, "many"), join(dir, "many.c")]);
  const procs = join(cgroup, "cgroup.procs");
  const child = spawn("sh", ["-c", `echo $$ > '${procs}' && exec '${join(dir, "many")}' ${n}`], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => d.toString().includes("ready") && resolve());
    child.once("exit", (code) => reject(new Error(`the thread maker exited (${code}) before its threads were ready`)));
  });
  return {
    pid: child.pid!,
    stop: async () => {
      child.kill("SIGKILL");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const MANY = 20_000;

suite(title(`GetCgroupStats of a ${MANY}-thread cgroup: bounded in time, in flight and in event-loop use`), () => {
  let dir: string;
  let many: Child;
  const records: LogRecord[] = [];
  beforeAll(async () => {
    dir = makeCgroup(V2);
    many = await startManyThreads(MANY, dir);
    configureLogging({ level: "info", sink: (r) => records.push(r) });
  }, 60_000);
  afterAll(async () => {
    configureLogging({ sink: () => {} });
    await many?.stop();
    if (dir !== undefined) await removeCgroup(dir);
  });
  const accessOf = (method: string) =>
    records.filter((r) => r.category.join(".") === "taskwire.access" && r.properties["method"] === method);

  it("counts every thread, then stops counting as soon as its client leaves; the access log records that end", async () => {
    const running = await startServer(await openNetlinkSource({ cgroupMaxThreads: 65536 }));
    try {
      const t0 = performance.now();
      const full = await counts(running.client, dir);
      const fullMs = performance.now() - t0;
      expect(full.sleeping).toBeGreaterThanOrEqual(MANY);
      records.length = 0;
      const ctl = new AbortController();
      const call = running.client.getCgroupStats({ path: dir }, { signal: ctl.signal }).catch((e: unknown) => e);
      await sleep(Math.min(30, fullMs / 10));
      ctl.abort();
      expect(await call).toMatchObject({ code: Code.Canceled });
      await eventually(() => accessOf("GetCgroupStats").length === 1);
      const [aborted] = accessOf("GetCgroupStats");
      expect(aborted!.properties["code"]).toBe("canceled");
      // Written when the handler stopped, which is well before a whole count would have ended.
      expect(aborted!.properties["durationMs"]).toBeLessThan(fullMs / 2);
      // The one count this caller may have in flight ended: a new one is admitted at once.
      expect((await counts(running.client, dir)).sleeping).toBeGreaterThanOrEqual(MANY);
    } finally {
      await running.close();
    }
  });

  it("admits one count per principal and --cgroup-max-concurrent in all (RESOURCE_EXHAUSTED saying what to do)", async () => {
    const names = ["a", "b", "c"] as const;
    const tokens = Object.fromEntries(names.map((n) => [n, newToken()])) as Record<(typeof names)[number], string>;
    const file = join(mkdtempSync(join(tmpdir(), "taskwire-cgroup-gate-")), "auth.json");
    writeFileSync(
      file,
      JSON.stringify({
        principals: Object.fromEntries(names.map((n) => [n, { roles: ["read"] }])),
        tokens: Object.fromEntries(names.map((n) => [hashToken(tokens[n]), n])),
      }),
    );
    const running = await startServer(await openNetlinkSource(), {}, {
      authenticator: createAuthenticator({ tokenFile: file }),
      cgroupCalls: { maxConcurrent: 2 },
    });
    const as = (n: (typeof names)[number]) => createTaskwireClient(running.url, { token: tokens[n], retry: false });
    try {
      const first = as("a").getCgroupStats({ path: dir });
      const second = as("b").getCgroupStats({ path: dir });
      await sleep(20); // both are counting (a count of this cgroup takes hundreds of ms)
      const again = await as("a").getCgroupStats({ path: dir }).catch((e: unknown) => e);
      expect(again).toBeInstanceOf(LimitExceededError);
      expect((again as LimitExceededError).rawMessage).toMatch(/"a" already has 1 GetCgroupStats call in flight.*wait/);
      const third = await as("c").getCgroupStats({ path: dir }).catch((e: unknown) => e);
      expect(third).toBeInstanceOf(LimitExceededError);
      expect((third as LimitExceededError).rawMessage).toMatch(
        /counting 2 cgroups already.*--cgroup-max-concurrent.*retry/,
      );
      // The server's count is full for the moment: the refusal says when to retry, and the SDK's default
      // client does so until the counts before it end. One caller's own count in flight is for it to wait on.
      expect((third as LimitExceededError).retryAfterMs).toBe(1000);
      expect((again as LimitExceededError).retryAfterMs).toBeUndefined();
      const retrying = createTaskwireClient(running.url, { token: tokens.c }).getCgroupStats({ path: dir });
      await Promise.all([first, second]);
      expect(Number((await retrying).nrSleeping)).toBeGreaterThanOrEqual(MANY);
      expect(Number((await as("c").getCgroupStats({ path: dir })).nrSleeping)).toBeGreaterThanOrEqual(MANY);
    } finally {
      await running.close();
    }
  });

  it("stops a count past --cgroup-timeout (RESOURCE_EXHAUSTED naming the flag), and frees its place", async () => {
    const running = await startServer(await openNetlinkSource(), {}, { cgroupCalls: { timeoutMs: 20 } });
    try {
      const t0 = performance.now();
      const err = await running.client.getCgroupStats({ path: dir }).catch((e: unknown) => e);
      const ms = performance.now() - t0;
      expect(err).toBeInstanceOf(LimitExceededError);
      expect((err as LimitExceededError).rawMessage).toMatch(/longer than 20 ms.*--cgroup-timeout.*child cgroup/);
      const again = await running.client.getCgroupStats({ path: dir }).catch((e: unknown) => e);
      expect((again as LimitExceededError).rawMessage).toMatch(/--cgroup-timeout/); // not "in flight": the first ended
      expect(ms).toBeLessThan(10_000); // it did end (a hung count would hit vitest's timeout instead)
    } finally {
      await running.close();
    }
  });

  it("yields to other callers while it counts: GetInfo calls complete during one count", async () => {
    const running = await startServer(await openNetlinkSource());
    try {
      let counting = true;
      const count = running.client.getCgroupStats({ path: dir }).finally(() => (counting = false));
      const other = createTaskwireClient(running.url);
      await other.getInfo({}); // its connection is up before the count starts working
      let during = 0;
      let longest = 0;
      while (counting) {
        const t = performance.now();
        await other.getInfo({});
        if (counting) {
          during++;
          longest = Math.max(longest, performance.now() - t);
        }
      }
      await count;
      // A count that held the event loop until done would let none through.
      expect(during).toBeGreaterThanOrEqual(3);
      console.info(`GetInfo during a ${MANY}-thread count: ${during} calls, longest ${longest.toFixed(1)} ms`);
    } finally {
      await running.close();
    }
  });
});
