/**
 * Logs: levels and formats (text keeps the start-up lines' wording, json is
 * one object per line), and the access log: one record per RPC on every
 * protocol and one per stream end with its events and losses, never one per
 * event, and a flood of failed calls bounded. Once through the CLI's stderr.
 */
import { execFileSync } from "node:child_process";
import { resolve } from "node:path";
import { createTaskwireClient } from "@taskwire/client";
import type { Logger, LogRecord } from "@logtape/logtape";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { configureLogging, logText, parseLevel } from "../src/log/logger.ts";
import { UNEXPECTED_ERRORS_PER_SECOND } from "../src/log/error-log.ts";
import { toConnectError } from "../src/rpc/errors.ts";
import { Code } from "@connectrpc/connect";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { createAuditLog } from "../src/auth/audit.ts";
import { collectExits, eventually, type Running, sleep, spawnServer, startServer } from "./helpers.ts";

const root = resolve(import.meta.dirname, "..");

function lines(o: { level?: "debug" | "info" | "warning" | "error"; format?: "text" | "json" }) {
  const out: string[] = [];
  const logger = configureLogging({ ...o, write: (line) => out.push(line) });
  return { logger, out };
}

describe("logger", () => {
  it("filters by level; warn is an alias of warning", () => {
    expect(parseLevel("warn")).toBe("warning");
    expect(() => parseLevel("loud")).toThrow(/debug, info, warning, error/);
    const { logger, out } = lines({ level: parseLevel("WARN") });
    for (const level of ["debug", "info", "warning", "error"] as const) logText(logger, level, `at ${level}`);
    expect(out).toEqual(["taskwire: warning: at warning\n", "taskwire: error: at error\n"]);
  });

  it("text: one line, the level unless info, the sub-category, key=value fields quoted when needed", () => {
    const { logger, out } = lines({ level: "debug" });
    logText(logger, "info", "serving {x} on http://127.0.0.1:1");
    logText(logger.getChild("access"), "info", "rpc", { method: "GetInfo", peer: "a b", n: 3, evil: "x\ny=1" });
    logText(logger, "debug", "line\nbreak");
    expect(out).toEqual([
      "taskwire: serving {x} on http://127.0.0.1:1\n",
      'taskwire: access: rpc method=GetInfo peer="a b" n=3 evil="x\\ny=1"\n',
      "taskwire: debug: line\\u000abreak\n",
    ]);
  });

  it("json: one object per line with time, level, logger, message and the fields", () => {
    const { logger, out } = lines({ format: "json" });
    logText(logger.getChild("audit"), "warning", "unauthenticated {not a placeholder}", { method: "GetInfo", n: 2 });
    expect(out).toHaveLength(1);
    expect(out[0]!.endsWith("\n")).toBe(true);
    const o = JSON.parse(out[0]!) as Record<string, unknown>;
    expect(o).toMatchObject({
      level: "WARN",
      logger: "taskwire.audit",
      message: "unauthenticated {not a placeholder}",
      method: "GetInfo",
      n: 2,
    });
    expect(Date.parse(o["@timestamp"] as string)).toBeGreaterThan(0);
  });
});

describe("access log", () => {
  const records: LogRecord[] = [];
  const access = () => records.filter((r) => r.category.join(".") === "taskwire.access");
  let running: Running;
  let logger: Logger;
  beforeAll(async () => {
    logger = configureLogging({ level: "info", sink: (r) => records.push(r) });
    running = await startServer(createSimSource({ cpus: 4, exitRate: 20_000, seed: 3 }), {}, { logger });
  });
  afterAll(() => running?.close());

  it.each(["connect", "grpc-web", "grpc"] as const)("one record per unary call over %s", async (protocol) => {
    records.length = 0;
    const client = createTaskwireClient(running.url, { protocol });
    await client.getInfo({});
    await expect(client.deregister({ listenerId: "nope", cpumask: "0" })).rejects.toThrow(/no listener/);
    await eventually(() => access().length === 2);
    const [ok, failed] = access().map((r) => r.properties);
    expect(ok).toMatchObject({ method: "GetInfo", protocol, code: "ok", peer: "127.0.0.1" });
    expect(ok!["principal"]).toMatch(/^anonymous/);
    expect(ok!["responseBytes"]).toBeGreaterThan(100);
    expect(ok!["durationMs"]).toBeGreaterThanOrEqual(0);
    expect(failed).toMatchObject({ method: "Deregister", code: "not_found" });
    expect(failed!["requestBytes"]).toBeGreaterThan(0);
    expect(access().every((r) => r.level === "info" && r.message.join("") === "rpc")).toBe(true);
  });

  it("one record per stream end, with events and the end code; none per event", async () => {
    records.length = 0;
    const c = await collectExits(running.client, { cpumask: "0-3", resume: false });
    await eventually(() => c.events.length >= 1000);
    await c.stop();
    await eventually(() => access().length === 1);
    await new Promise((r) => setTimeout(r, 200)); // nothing more comes
    expect(c.events.length).toBeGreaterThanOrEqual(1000);
    expect(records).toHaveLength(1);
    const end = records[0]!;
    expect(end.message.join("")).toBe("stream");
    expect(end.properties).toMatchObject({ method: "SubscribeExits", code: "canceled", lost: 0 });
    expect(end.properties["listenerId"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(end.properties["events"]).toBeGreaterThanOrEqual(c.events.length);
    expect(end.properties["responseBytes"]).toBeGreaterThan(1000 * 50);
  });

  it("reports a stream's losses by reason", async () => {
    records.length = 0;
    const reg = await running.client.register({ cpumask: "0-3", buffer: 16 });
    await new Promise((r) => setTimeout(r, 300)); // 20,000 exits/s into a 16-event queue: it overflows
    const c = await collectExits(running.client, { listenerId: reg.listenerId, resume: false });
    await eventually(() => c.events.length >= 20);
    await c.stop();
    await running.client.deregister({ listenerId: reg.listenerId, cpumask: "0-3" });
    await eventually(() => access().some((r) => r.message.join("") === "stream"));
    const end = access().find((r) => r.message.join("") === "stream")!.properties;
    expect(end["lost"]).toBeGreaterThan(0);
    expect((end["lostByReason"] as Record<string, number>)["subscriber-overflow"]).toBe(end["lost"]);
  });

  it("bounds the lines a flood of failed calls makes, and says how many it left out", async () => {
    const small = await startServer(createSimSource({ cpus: 1, exitRate: 0 }), {}, {
      logger,
      accessLog: { linesPerSecond: 20 },
    });
    records.length = 0;
    const bad = () =>
      fetch(`${small.url}/taskwire.v1.TaskStats/GetInfo`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{not json",
      });
    const statuses = await Promise.all(Array.from({ length: 50 }, bad).map(async (p) => (await p).status));
    await small.close();
    expect(statuses.every((s) => s === 400)).toBe(true);
    const logged = () => access().filter((r) => r.level === "info");
    const skipped = () =>
      records.filter((r) => r.level === "warning")
        .map((r) => Number(/^(\d+) failed calls not logged/.exec(r.message.join(""))?.[1] ?? 0))
        .reduce((a, b) => a + b, 0);
    // Every call is either logged or counted in a summary (written when its second is over).
    await eventually(() => logged().length + skipped() === 50, 3000);
    // 20 lines/s, failed calls a tenth of it: 2 a second (the 50 may straddle a second boundary).
    expect(logged().length).toBeGreaterThanOrEqual(2);
    expect(logged().length).toBeLessThanOrEqual(4);
    expect(logged()[0]!.properties).toMatchObject({ method: "GetInfo", code: "invalid_argument" });
  });
});

describe("unexpected errors", () => {
  it("are one error record each: message and a clipped stack as fields, never multi-line text", () => {
    const { out } = lines({});
    const err = new Error("boom\nsecond line");
    err.stack = `Error: boom\nsecond line\n${"    at frame (file.ts:1:1)\n".repeat(500)}`;
    expect(toConnectError(err)).toMatchObject({ code: Code.Internal, rawMessage: /the server log has details/ });
    expect(out).toHaveLength(1);
    const line = out[0]!;
    expect(line.indexOf("\n")).toBe(line.length - 1); // one line
    expect(line).toMatch(
      /^taskwire: error: unexpected error in a handler error="boom\\nsecond line" stack="Error: boom/,
    );
    expect(line).toMatch(/… \(\d+ characters\)"\n$/); // the stack, clipped
    expect(line.length).toBeLessThan(2048 + 200);
  });

  it("a flood of them writes a few lines a second and one count of the rest", async () => {
    const { out } = lines({ format: "json" });
    for (let i = 0; i < 500; i++) toConnectError(new TypeError(`bug ${i}`));
    const logged = () => out.map((l) => JSON.parse(l) as Record<string, unknown>);
    await eventually(() => logged().some((r) => /more unexpected errors/.test(String(r["message"]))), 3000);
    const records = logged();
    const each = records.filter((r) => r["message"] === "unexpected error in a handler");
    expect(each.length).toBeGreaterThanOrEqual(1);
    expect(each.length).toBeLessThanOrEqual(2 * UNEXPECTED_ERRORS_PER_SECOND); // may straddle a second
    expect(each[0]).toMatchObject({
      level: "ERROR",
      errorName: "TypeError",
      error: expect.stringMatching(/^bug \d+$/),
    });
    const skipped = records.map((r) => Number(/^(\d+) more/.exec(String(r["message"]))?.[1] ?? 0));
    expect(each.length + skipped.reduce((a, b) => a + b, 0)).toBe(500);
  });

  it("json: U+2028 and U+2029 are escaped, so no reader splits a record", () => {
    const { logger, out } = lines({ format: "json" });
    logText(logger, "info", "a\u2028b", { peer: "x\u2029y" });
    expect(out[0]).not.toMatch(/[\u2028\u2029]/);
    expect(out[0]).toContain("a\\u2028b");
    expect(JSON.parse(out[0]!)).toMatchObject({ message: "a\u2028b", peer: "x\u2029y" });
  });

  it("a handler's unexpected error reaches the client as INTERNAL and the log as one record", async () => {
    const { out } = lines({});
    const source = createSimSource({ cpus: 1, exitRate: 0 });
    source.getPid = () => Promise.reject(new RangeError("multi\nline\u2028fault"));
    const running = await startServer(source);
    try {
      const err = await running.client.getPid({ pid: 1 }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: Code.Internal });
      expect((err as Error).message).not.toMatch(/multi/); // nothing of the fault leaks to the client
      const faults = out.filter((l) => l.includes("unexpected error"));
      expect(faults).toHaveLength(1);
      expect(faults[0]).toMatch(/error="multi\\nline\\u2028fault" errorName=RangeError stack=/);
    } finally {
      await running.close();
    }
  });
});

describe("through the CLI", () => {
  beforeAll(() => {
    execFileSync("npm", ["run", "build"], { cwd: root, stdio: "ignore" });
  }, 120_000);

  it("--log-format json writes start-up, access and shutdown records as JSON lines on stderr", async () => {
    const bin = resolve(root, "dist/src/cli/run.js");
    const args = [bin, "serve", "--source", "sim", "--port", "0", "--log-format", "json"];
    // spawnServer waits for "on http://... with" in stderr, which the JSON message carries too.
    const s = await spawnServer(process.execPath, args, root);
    let err = "";
    s.child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    const exited = new Promise((r) => s.child.once("close", r));
    try {
      await createTaskwireClient(s.url).getInfo({});
      await eventually(() => err.includes("taskwire.access"));
    } finally {
      s.stop();
    }
    await exited;
    const records = err.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(records.find((r) => r["logger"] === "taskwire.access")).toMatchObject({
      level: "INFO",
      message: "rpc",
      method: "GetInfo",
      code: "ok",
    });
    expect(records.at(-1)).toMatchObject({ logger: "taskwire", message: "SIGTERM, shutting down" });
  }, 60_000);
});

describe("audit log", () => {
  it("a flood of refusals writes 20 lines a second and sums up the rest once the second is over, with no later refusal", async () => {
    const out: string[] = [];
    const audit = createAuditLog({ write: (line) => out.push(line) });
    const refusal = { kind: "unauthenticated", address: "127.0.0.1", method: "GetInfo", reason: "no token" } as const;
    // Started just after a second turns, so the 50 refusals fall in one second.
    await sleep(1001 - (Date.now() % 1000));
    for (let i = 0; i < 50; i++) audit.record(refusal);
    expect(out.filter((l) => l.includes("unauthenticated"))).toHaveLength(20);
    expect(audit.counts.unauthenticated).toBe(50);
    // The count of the 30 not written comes by itself (it used to wait for the next refused call).
    await eventually(() => out.some((l) => l.includes("30 more refused calls not logged")), 2000);
    expect(out).toHaveLength(21);
  });
});
