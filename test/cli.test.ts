/** The taskwire command as a user runs it: bin/taskwire.js (built by `npm test` first). */
import { type ChildProcess, execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnServer } from "./helpers.ts";

const root = new URL("..", import.meta.url).pathname;
const bin = `${root}bin/taskwire.js`;
let server: ChildProcess;
let url = "";

async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)("node", [bin, ...args], {
      cwd: root,
      env: { ...process.env, TASKWIRE_URL: url },
    });
    return { code: 0, out: stdout, err: stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

beforeAll(async () => {
  if (!existsSync(`${root}dist/src/cli/main.js`)) {
    throw new Error("dist/ is missing: run `npm run build` (npm test does it first)");
  }
  ({ url, child: server } = await spawnServer("node", [
    bin,
    "serve",
    "--source",
    "sim",
    "--port",
    "0",
    "--sim-exit-rate",
    "400",
  ], root));
});
afterAll(() => {
  server.kill("SIGTERM");
});

describe("taskwire CLI", () => {
  it("watch --cpus 0-1 sees exits only from CPUs 0-1", async () => {
    const r = await run("watch", "--cpus", "0-1", "--count", "40", "--json");
    expect(r.code).toBe(0);
    const events = r.out.trim().split("\n").map((l) => JSON.parse(l));
    expect(events).toHaveLength(40);
    for (const ev of events) expect([undefined, 1]).toContain(ev.cpu); // proto JSON omits cpu 0
    expect(events.every((ev) => typeof ev.exit.pid_stats.ac_comm === "string")).toBe(true);
    expect(r.err).toMatch(/watching CPUs 0-1/);
  });

  it("watch prints one readable line per exit", async () => {
    const r = await run("watch", "--cpus", "0-7", "--count", "5");
    // Each line starts with the time the server received the record (local time of day, ms).
    expect(r.out.split("\n").filter((l) => /^\d\d:\d\d:\d\d\.\d{3} seq /.test(l))).toHaveLength(5);
    expect(r.out).toMatch(/^\d\d:\d\d:\d\d\.\d{3} seq 1 cpu \d+ pid \d+ tgid \d+ comm "[^"]+" (exit \d+|signal \d+)/m);
    expect(r.err).toMatch(/watching CPUs 0-7 on \S+ \(sim, boot [0-9a-f]{8}\)/);
  });

  it("info and get pid/tgid print readable tables", async () => {
    const info = await run("info");
    expect(info.out).toMatch(/^source\s+sim$/m);
    expect(info.out).toMatch(/^boot id\s+[0-9a-f-]{36}$/m);
    const json = JSON.parse((await run("info", "--json")).out);
    expect(json.possible_cpus).toBe("0-7");
    const ev = JSON.parse((await run("watch", "--cpus", "0-7", "--count", "1", "--json")).out);
    expect(ev.exit.received_at).toMatch(/^\d{4}-\d\d-\d\dT/); // google.protobuf.Timestamp in JSON: RFC 3339
    const ppid = ev.exit.pid_stats.ac_ppid as number;
    const got = await run("get", "tgid", String(ppid));
    if (got.code === 0) expect(got.out).toMatch(/^cpu_delay_total\s+\d+ ns$/m);
    else expect(got.err).toMatch(/NotFound: no live task with tgid/);
    const dead = await run("get", "pid", String(ev.exit.pid));
    expect(dead.code).toBe(1);
    expect(dead.err).toMatch(/NotFound: no live task with pid/);
  });

  it("explains bad input and a missing server", async () => {
    const bad = await run("watch", "--cpus", "0-99", "--count", "1");
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/InvalidArgument: .*possible CPUs are 0-7/);
    const usage = await run("watch");
    expect(usage.code).toBe(2);
    expect(usage.err).toMatch(/--cpus/);
    const down = await run("info", "--url", "http://127.0.0.1:1");
    expect(down.code).toBe(1);
    expect(down.err).toMatch(/cannot reach a taskwire server.*taskwire serve/);
    const kind = await run("get", "proc", "1");
    expect(kind.code).toBe(2);
  });

  it("serve --help lists the flags", async () => {
    const r = await run("serve", "--help");
    for (const flag of ["--source", "--host", "--port", "--sim-cpus", "--sim-exit-rate", "--sim-seed"]) {
      expect(r.out).toContain(flag);
    }
  });
});

describe("taskwire serve and signals", () => {
  it("SIGHUP with no token file (a service manager's reload) keeps serving and says there is nothing to reload", async () => {
    const s = await spawnServer("node", [bin, "serve", "--source", "sim", "--port", "0"], root);
    let err = "";
    s.child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    try {
      process.kill(s.child.pid!, "SIGHUP");
      const until = Date.now() + 5000;
      while (!/SIGHUP: nothing to reload/.test(err) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      expect(err).toMatch(/SIGHUP: nothing to reload \(no --token-file\)/);
      expect(s.child.exitCode).toBe(null);
      const r = await promisify(execFile)("node", [bin, "info", "--url", s.url], { cwd: root });
      expect(r.stdout).toMatch(/^source\s+sim$/m);
    } finally {
      s.stop();
    }
  });
});
