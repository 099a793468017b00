/** `taskwire watch --nats` and `top --nats`: the CLI reading a fleet from a real nats-server. */
import { execFile, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import {
  collectFleet,
  craftedStream,
  fleetServer,
  haveNatsServer,
  type NatsServer,
  startNats,
  stopFleetServer,
} from "./fleet-nats.ts";
import { eventually } from "./helpers.ts";

const run = promisify(execFile);
const CLI = new URL("../bin/taskwire.js", import.meta.url).pathname;

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [CLI, ...args], { timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

/** The commands of a session's live members (a detached child leads its own session and process group). */
function groupCommands(pgid: number): string[] {
  try {
    return execFileSync("ps", ["-o", "comm=", "--sid", String(pgid)], { encoding: "utf8" }).split("\n").filter(Boolean);
  } catch {
    return []; // ps exits 1 when the session is empty
  }
}

/** The seqs of `watch --json` lines. */
function jsonSeqs(text: string): number[] {
  return text.trim().split("\n").filter(Boolean).map((l) => Number((JSON.parse(l) as { seq: string }).seq));
}

describe.skipIf(!haveNatsServer)("CLI over the fleet (needs /usr/sbin/nats-server)", () => {
  let nats: NatsServer;
  let servers: Awaited<ReturnType<typeof fleetServer>>[] = [];
  beforeAll(async () => {
    nats = await startNats();
    const fleet = { stream: "CLI_TEST", prefix: "cli" };
    servers = await Promise.all(["web-1", "web-2", "db-1"].map((h) => fleetServer(nats.url, h, { fleet })));
  }, 30_000);
  afterAll(async () => {
    for (const s of servers) await stopFleetServer(s);
    await nats?.close();
  });
  const flags = () => ["--nats", nats.url, "--nats-stream", "CLI_TEST", "--nats-subject-prefix", "cli"];

  it("watch --nats --hosts 'web-*' --json: only those hosts, each line names its host", async () => {
    const r = await cli(["watch", ...flags(), "--hosts", "web-*", "--cpus", "0-1", "--json", "--count", "300"]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { host: string; cpu: number });
    expect(lines).toHaveLength(300);
    expect(new Set(lines.map((l) => l.host))).toEqual(new Set(["web-1", "web-2"]));
    expect(lines.every((l) => l.cpu <= 1)).toBe(true);
  });

  it("watch --nats text lines name their host; top --nats --by tgid keys each process by its host", async () => {
    const r = await cli(["watch", ...flags(), "--hosts", "db-1", "--count", "20"]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split("\n").filter((l) => !l.startsWith("  "));
    expect(lines.length).toBeGreaterThanOrEqual(20);
    for (const l of lines) expect(l).toMatch(/^(\d\d:\d\d:\d\d\.\d{3} )?db-1 (cpu|LOST)/);
    const t = await cli(["top", ...flags(), "--by", "tgid", "--once", "--json", "--window", "1"]);
    expect(t.code, t.stderr).toBe(0);
    const doc = JSON.parse(t.stdout) as { host: string; delayacct: unknown; rows: { key: string }[] };
    expect(doc.rows.length).toBeGreaterThan(0);
    for (const row of doc.rows) expect(row.key).toMatch(/^(\d+@(web-1|web-2|db-1)|\(other\))$/);
    expect(doc.host).toMatch(/fleet/);
  });

  it("top --nats --by host --once --json: one row per host", async () => {
    const r = await cli(["top", ...flags(), "--by", "host", "--once", "--json", "--window", "2"]);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { rows: { key: string; exits: number }[] };
    expect(doc.rows.map((row) => row.key).sort()).toEqual(["db-1", "web-1", "web-2"]);
    expect(doc.rows.every((row) => row.exits > 0)).toBe(true);
  });

  it("info on a publishing server says where it publishes and how it is doing", async () => {
    const r = await cli(["info", "--url", servers[0]!.url]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /^fleet \(NATS\) +connected, publishing to stream CLI_TEST as cli\.web-1\.exits\.\*: \d+ event\(s\) published, /m,
    );
    expect(r.stdout).toMatch(/^memory +\S+ \S+ held of a \S+ \S+ budget$/m);
  });

  it("watch --nats --durable, interrupted with a message partly printed, prints the rest of it before exiting", async () => {
    const nc = await connect({ servers: nats.url });
    const pub = await craftedStream(nc, "CLI_DRAIN", "cd");
    await pub(0, [1, 3], "1-4");
    const args = ["--nats", nats.url, "--nats-stream", "CLI_DRAIN", "--nats-subject-prefix", "cd"];
    const child = spawn(process.execPath, [CLI, "watch", ...args, "--durable", "cli-d", "--from-start", "--json"]);
    try {
      let stdout = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
      await eventually(() => jsonSeqs(stdout).length === 1, 10_000); // 1 printed; 3 waits for 2, in the other message
      child.kill("SIGINT");
      await pub(1, [2, 4], "1-4");
      expect(await exited).toBe(0);
      expect(jsonSeqs(stdout)).toEqual([1, 2, 3, 4]);
    } finally {
      child.kill("SIGKILL");
      await nc.close();
    }
  });

  it("watch --nats --durable | cat, Ctrl-C to both: what the dead pipe did not take is not acked, it comes again", async () => {
    const nc = await connect({ servers: nats.url });
    const pub = await craftedStream(nc, "CLI_PIPE", "cp");
    const o = { connection: nc, stream: "CLI_PIPE", subjectPrefix: "cp", durable: "cli-p", ackWaitMs: 1000 };
    await collectFleet(o).stop(); // makes the durable consumer, with a 1 s ack wait, before anything is published
    await pub(0, [1, 3], "1-4");
    const dir = mkdtempSync(join(tmpdir(), "taskwire-pipe-"));
    const file = join(dir, "out");
    const args = `--nats ${nats.url} --nats-stream CLI_PIPE --nats-subject-prefix cp --durable cli-p --json`;
    // Its own process group, as a shell's job: Ctrl-C reaches cat and watch alike.
    const sh = spawn("sh", ["-c", `'${process.execPath}' '${CLI}' watch ${args} | cat > '${file}'`], {
      detached: true,
    });
    const exited = new Promise<void>((resolve) => sh.on("exit", () => resolve()));
    const printed = () => jsonSeqs(existsSync(file) ? readFileSync(file, "utf8") : "");
    try {
      await eventually(() => printed().length === 1, 10_000);
      process.kill(-sh.pid!, "SIGINT");
      // cat gone first: what watch writes after that fails (written before, it sits in the pipe, which is all watch
      // can know of it, and dies with cat under a loaded machine's scheduling).
      await eventually(() => !groupCommands(sh.pid!).includes("cat"), 5000);
      await pub(1, [2, 4], "1-4");
      await exited;
      await eventually(() => groupCommands(sh.pid!).length === 0, 5000); // watch too: sh may go first on SIGINT
      const next = collectFleet(o);
      await eventually(() => new Set([...printed(), ...next.events.map((e) => Number(e.seq))]).size === 4, 8000)
        .catch(() => {
          throw new Error(
            `printed ${printed()}, then ${next.events.map((e) => Number(e.seq))}: some were acked unprinted`,
          );
        });
      await next.stop();
    } finally {
      try {
        process.kill(-sh.pid!, "SIGKILL");
      } catch { /* gone */ }
      rmSync(dir, { recursive: true, force: true });
      await nc.close();
    }
  });

  it("fleet-only flags without --nats are a usage error (2); an unreachable NATS is a runtime error (1)", async () => {
    const stray = await cli(["watch", "--cpus", "0", "--hosts", "web-*"]);
    expect(stray.code).toBe(2);
    expect(stray.stderr).toMatch(/--hosts needs --nats/);
    // A stream or prefix other than the default is one too (it would be ignored).
    const stream = await cli(["watch", "--cpus", "0", "--nats-stream", "OTHER"]);
    expect([stream.code, stream.stderr]).toEqual([2, expect.stringMatching(/--nats-stream needs --nats/)]);
    const down = await cli(["watch", "--nats", "nats://127.0.0.1:1", "--count", "1"]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/127\.0\.0\.1:1/);
    // With --nats no server is asked: its settings are neither used nor checked.
    for (const command of [["watch", "--count", "1"], ["top", "--once"]]) {
      const unused = await cli([...command, "--nats", "nats://127.0.0.1:1", "--url", "not a url", "--cert", "/x"]);
      expect([unused.code, unused.stderr]).toEqual([1, expect.stringMatching(/127\.0\.0\.1:1/)]);
    }
  });
});
