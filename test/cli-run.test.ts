/**
 * `taskwire run -- CMD` against the real kernel (netlink source): the
 * command's accounting, its exit status passed through, CPU time checked
 * against what the command measured itself (getrusage, via process.cpuUsage).
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createTaskwireClient } from "@taskwire/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { _sameKernel } from "../src/cli/run-command.ts";
import { spawnServer } from "./helpers.ts";

const root = new URL("..", import.meta.url).pathname;
const bin = `${root}bin/taskwire.js`;
let server: Awaited<ReturnType<typeof spawnServer>>;

async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return await runWith(process.env, ...args);
}

async function runWith(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)("node", [bin, "run", "--url", server.url, ...args], {
      cwd: root,
      env,
    });
    return { code: 0, out: stdout, err: stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

beforeAll(async () => {
  server = await spawnServer("node", [bin, "serve", "--source", "netlink", "--port", "0"], root);
});
afterAll(() => server.stop());

describe("taskwire run (real kernel)", () => {
  it("reports a multithreaded command's CPU time within tolerance of what it measured itself", async () => {
    const dir = mkdtempSync(join(tmpdir(), "taskwire-run-"));
    const report = join(dir, "report.json");
    // node is multithreaded (libuv and V8 threads): its CPU time is the sum of its thread records.
    // Busy until it has used 300 ms of CPU (not wall time: the machine is shared), then report its own getrusage.
    const busy = "let x=0; for (;;) { for (let i=0; i<1e6; i++) x++; if (process.cpuUsage().user >= 300000) break; } " +
      "const u=process.cpuUsage(); console.log(JSON.stringify(u))";
    const r = await run("--json", "-o", report, "--", process.execPath, "-e", busy);
    expect(r.code).toBe(0);
    const self = JSON.parse(r.out) as { user: number; system: number };
    const doc = JSON.parse(readFileSync(report, "utf8"));
    expect(doc).toMatchObject({ exit_code: 0, status: "exit 0", complete: true, problem: null });
    expect(doc.threads).toBeGreaterThan(1);
    expect(doc.group_delays).not.toBeNull(); // the kernel's AGGR_TGID record of a multithreaded group
    const measured = (self.user + self.system) / 1e6;
    // cpu_run_virtual_total is sum_exec_runtime (ns; kernel/delayacct.c delayacct_add_tsk), to which getrusage scales
    // its user/system split: the precise comparison. The process measured itself just before exiting (then tore down).
    const run_ = Number(doc.process.cpu_run_virtual_total) / 1e9;
    console.log(`run: measured ${measured.toFixed(4)} s, cpu_run_virtual_total ${run_.toFixed(4)} s`);
    expect(run_).toBeGreaterThanOrEqual(measured - 0.005);
    expect(run_).toBeLessThanOrEqual(measured * 1.15 + 0.05);
    // ac_utime + ac_stime (and cpu_run_real_total, their sum in ns) are sampled at the tick (4 ms here) per thread.
    const ticks = (Number(doc.process.ac_utime) + Number(doc.process.ac_stime)) / 1e6;
    console.log(`run: ac_utime + ac_stime ${ticks.toFixed(4)} s over ${doc.threads} threads`);
    expect(Math.abs(ticks - run_)).toBeLessThanOrEqual(0.004 * (doc.threads + 2) + 0.1 * run_);
    expect(doc.process.ac_comm).toBe("node");
    expect(doc.process.ac_pid).toBe(doc.command_pid);
  }, 30_000);

  it("passes exit 3 on, with a readable report on stderr", async () => {
    const r = await run("--", "sh", "-c", "exit 3");
    expect(r.code).toBe(3);
    expect(r.err).toMatch(/^taskwire run: pid \d+ ended with exit 3; 1 thread record\(s\)$/m);
    expect(r.err).toMatch(/^comm "sh" .* status exit 3 /m);
    for (
      const section of [
        /^CPU +user /m,
        /^DELAYS +class +count +total +average +max +min$/m,
        /^I\/O /m,
        /^MEMORY +peak RSS /m,
        /^CONTEXT +voluntary /m,
      ]
    ) {
      expect(r.err).toMatch(section);
    }
  }, 30_000);

  it("what follows the command's name is the command's, not run's: run echo --json, run ls -la", async () => {
    const echo = await run("echo", "--json", "-o", "/dev/null");
    expect(echo.code, echo.err).toBe(0);
    expect(echo.out).toBe("--json -o /dev/null\n");
    expect(echo.err).toMatch(/^taskwire run: pid \d+ ended with exit 0/); // the text report: --json was echo's
    const ls = await run("ls", "-d", "-l", "/");
    expect(ls.code, ls.err).toBe(0);
    expect(ls.out).toMatch(/^d.* \/\n$/);
  });

  it("passes a signal on as 128 + its number, as shells do", async () => {
    const r = await run("--json", "--", "sh", "-c", "kill -9 $$");
    expect(r.code).toBe(137);
    const doc = JSON.parse(r.err);
    expect(doc.status).toBe("signal 9 (SIGKILL)");
    expect(doc.process.ac_exitcode).toBe(9); // the wait status the kernel recorded
  }, 30_000);

  it("leaves no listener behind; a missing command exits 127, one that cannot run 126, as shells do", async () => {
    const bad = await run("--", "/nonexistent/taskwire-test");
    expect(bad.code).toBe(127);
    expect(bad.err).toMatch(
      /^taskwire: run: cannot start \/nonexistent\/taskwire-test: no such file \(spawn .*ENOENT\)$/m,
    );
    // a bare name was looked up on PATH, and the message says so
    const unknown = await run("--", "taskwire-no-such-command");
    expect(unknown.code).toBe(127);
    expect(unknown.err).toMatch(/^taskwire: run: cannot start taskwire-no-such-command: no such command on PATH \(/m);
    const etc = await run("--", "/etc"); // found, but not a program
    expect(etc.code).toBe(126);
    expect(etc.err).toMatch(/^taskwire: run: cannot start \/etc: not a program this user may run \(spawn .*EACCES\)$/m);
    const info = await createTaskwireClient(server.url).getInfo({});
    expect(info.listeners).toBe(0);
  }, 30_000);

  it("a script whose #! interpreter is missing is named as such, not as a missing file (127, as bash)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "taskwire-run-"));
    const script = join(dir, "taskwire-bad-interpreter");
    writeFileSync(script, "#!/nonexistent/interp -x\necho hi\n", { mode: 0o755 });
    const byPath = await run("--", script);
    expect(byPath.code).toBe(127);
    expect(byPath.err).toMatch(
      new RegExp(
        `^taskwire: run: cannot start ${script}: ${script} is there, but not its interpreter ` +
          `/nonexistent/interp \\(its #! line\\) \\(spawn .*ENOENT\\)$`,
        "m",
      ),
    );
    const byName = await runWith(
      { ...process.env, PATH: `${dir}:${process.env["PATH"]}` },
      "--",
      "taskwire-bad-interpreter",
    );
    expect(byName.code).toBe(127);
    expect(byName.err).toMatch(
      /cannot start taskwire-bad-interpreter: \/.*\/taskwire-bad-interpreter is there, but not its interpreter/,
    );
  }, 30_000);

  it("-o FILE that cannot be written is a usage error before the command runs, not after", async () => {
    const dir = mkdtempSync(join(tmpdir(), "taskwire-run-o-"));
    const ran = join(dir, "ran");
    const bad = await run("-o", join(dir, "missing", "report"), "--", "sh", "-c", `touch ${ran}; exit 4`);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/^taskwire: run: cannot write the report to .*ENOENT.*; the command was not run$/m);
    expect(existsSync(ran)).toBe(false);
    const good = await run("--json", "-o", join(dir, "report"), "--", "sh", "-c", "exit 4");
    expect(good.code).toBe(4);
    expect(JSON.parse(readFileSync(join(dir, "report"), "utf8")).exit_code).toBe(4);
  }, 30_000);

  it("--buffer past the server's --max-buffer says the queue it got", async () => {
    const ran = await run("--buffer", "2000000", "--wait-ms", "100", "--", "true");
    expect(ran.code).toBe(0);
    expect(ran.err).toMatch(/taskwire: note: the server caps a queue at 1048576 events/);
  });

  it("a server that cannot see this machine's commands is a usage error before the command runs", async () => {
    const sim = await spawnServer("node", [bin, "serve", "--source", "sim", "--port", "0"], root);
    const dir = mkdtempSync(join(tmpdir(), "taskwire-run-sim-"));
    const ran = join(dir, "ran");
    try {
      const { code, stderr } = await promisify(execFile)("node", [bin, "run", "--url", sim.url, "--", "touch", ran], {
        cwd: root,
      }).then(() => ({ code: 0, stderr: "" }), (e: { code: number; stderr: string }) => e);
      expect(code).toBe(2);
      expect(stderr).toMatch(
        /^taskwire: run: the server at .* serves the simulated kernel \(--source sim\).*; the command was not run: point --url/m,
      );
      expect(existsSync(ran)).toBe(false);
      expect((await createTaskwireClient(sim.url).getInfo({})).listeners, "nothing registered").toBe(0);
    } finally {
      sim.stop();
    }
  }, 30_000);

  it("a server on another kernel (another boot id) is refused; this machine's is not", () => {
    const here = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    expect(() => _sameKernel("http://h:7878", "netlink", here)).not.toThrow();
    expect(() => _sameKernel("http://h:7878", "netlink", "")).not.toThrow(); // a server that does not say: no check
    expect(() => _sameKernel("http://h:7878", "netlink", "0".repeat(32), "1".repeat(32))).toThrow(
      /^run: the server at http:\/\/h:7878 watches another kernel \(boot id 00000000…, this machine's 11111111…\)/,
    );
  });
});
