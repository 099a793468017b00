/**
 * A client built only from proto/ (no project code): buf curl, which reads
 * the .proto files and speaks the Connect protocol itself, calls every method.
 */
import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { type Running, startServer } from "./helpers.ts";

const root = new URL("..", import.meta.url).pathname;
const buf = `${root}node_modules/.bin/buf`;
let running: Running;
let source: SimSource;
let livePid = 0;

beforeAll(async () => {
  // No exits of its own (exitRate 0): livePid stays alive however long buf curl takes to start under load
  // (at 300 exits/s it was gone within a second). The streaming test makes its exits with exitNow().
  source = createSimSource({ cpus: 8, exitRate: 0, seed: 2 }) as SimSource;
  livePid = source.kernel.livePids()[0]!;
  running = await startServer(source);
});
afterAll(() => running.close());

async function curl(method: string, data: object): Promise<{ code: number; out: string; err: string }> {
  const args = [
    "curl",
    "--schema",
    "proto",
    "--data",
    JSON.stringify(data),
    `${running.url}/taskwire.v1.TaskStats/${method}`,
  ];
  try {
    const { stdout, stderr } = await promisify(execFile)(buf, args, { cwd: root });
    return { code: 0, out: stdout, err: stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

describe("an independent Connect client built from proto/ only (buf curl)", () => {
  it("calls GetInfo, GetPid, GetTgid", async () => {
    expect(JSON.parse((await curl("GetInfo", {})).out)).toMatchObject({
      source: "sim",
      possibleCpus: "0-7",
      taskstatsVersion: 16,
    });
    const pid = JSON.parse((await curl("GetPid", { pid: livePid })).out);
    expect(pid.stats.acPid).toBe(livePid);
    const tgid = JSON.parse((await curl("GetTgid", { tgid: pid.stats.acTgid })).out);
    expect(tgid.tgid).toBe(pid.stats.acTgid);
  });

  it("calls Register and Deregister, and sees error codes", async () => {
    const reg = JSON.parse((await curl("Register", { cpumask: "1-3" })).out);
    expect(reg.cpumask).toBe("1-3");
    const dereg = JSON.parse((await curl("Deregister", { listenerId: reg.listenerId, cpumask: "2" })).out);
    expect(dereg.cpumask).toBe("1,3");
    const bad = await curl("Register", { cpumask: "0-4096" });
    expect(bad.code).not.toBe(0);
    expect(bad.err).toMatch(/invalid_argument/);
    expect(bad.err).toContain("possible CPUs are 0-7");
  });

  it("streams SubscribeExits", async () => {
    const child = spawn(buf, [
      "curl",
      "--schema",
      "proto",
      "--data",
      JSON.stringify({ cpumask: "0-7" }),
      `${running.url}/taskwire.v1.TaskStats/SubscribeExits`,
    ], { cwd: root });
    let out = "";
    let produced = false;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no exit event from buf curl; got: ${out}`)), 20_000);
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        if (!produced && /"listenerId":/.test(out)) {
          produced = true; // subscribed: its listener watches CPUs 0-7
          source.kernel.exitNow(20);
        }
        if (/"pidStats"/.test(out)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    child.kill();
    expect(out).toMatch(/"listenerId":/);
    expect(out).toMatch(/"acComm":/);
  });
});
