/**
 * /metrics: the Prometheus series a server keeps, behind the "metrics" role
 * (401 without credentials, 403 without the role, both audited); values that
 * follow what happened (RPCs by method, code and role; records per CPU;
 * kernel and subscriber drops; streams); a series count that hostile calls
 * cannot grow; the netlink reader's CPU time against the real kernel; and a
 * real Prometheus scraping it (Debian's prometheus and promtool; skipped
 * naming the missing binary, a failure with TASKWIRE_REQUIRE_INTEROP=1).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTaskwireClient, LossReason, type TaskwireClient } from "@taskwire/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AuditEvent, createAuditLog } from "../src/auth/audit.ts";
import { createAuthenticator } from "../src/auth/authenticator.ts";
import { hashToken, newToken } from "../src/auth/tokens.ts";
import type { ExitSink } from "../src/sources/source.ts";
import { openNetlinkSource } from "../src/sources/netlink/netlink-source.ts";
import { parseSchedstatSeconds, parseStatCpuSeconds } from "../src/sources/netlink/_thread-cpu.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { collectExits, eventually, type Running, startServer } from "./helpers.ts";
import { netlinkMissing } from "./native.ts";

const dir = mkdtempSync(join(tmpdir(), "taskwire-metrics-"));
const tokens = { ops: newToken(), app: newToken() };
const authFile = join(dir, "auth.json");
writeFileSync(
  authFile,
  JSON.stringify({
    principals: { ops: { roles: ["metrics"] }, app: { roles: ["read", "subscribe"] } },
    tokens: { [hashToken(tokens.ops)]: "ops", [hashToken(tokens.app)]: "app" },
  }),
);

/** Series name with labels -> value, from the text format. */
type Series = Map<string, number>;

function parse(text: string): Series {
  const out: Series = new Map();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const cut = line.lastIndexOf(" ");
    out.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return out;
}

async function scrape(url: string, token: string | null = tokens.ops): Promise<Response> {
  return await fetch(`${url}/metrics`, { headers: token === null ? {} : { authorization: `Bearer ${token}` } });
}

async function series(url: string): Promise<Series> {
  const res = await scrape(url);
  expect(res.status).toBe(200);
  return parse(await res.text());
}

const sum = (s: Series, prefix: string) => [...s].filter(([k]) => k.startsWith(prefix)).reduce((a, [, v]) => a + v, 0);

describe("/metrics on a sim server with authentication", () => {
  let running: Running;
  let source: SimSource;
  let sink!: ExitSink;
  let app: TaskwireClient, ops: TaskwireClient;
  const audited: AuditEvent[] = [];
  beforeAll(async () => {
    source = createSimSource({ cpus: 8, exitRate: 0, seed: 3 }) as SimSource;
    // Keeps the sink the server gives the source, to report kernel drops the sim never has.
    const start = source.start.bind(source);
    source.start = (s) => {
      sink = s;
      start(s);
    };
    const audit = createAuditLog({ write: () => {} });
    const record = audit.record.bind(audit);
    // Every scrape renders (no cache), so a scrape right after a call sees it.
    running = await startServer(source, {}, {
      metricsCacheMs: 0,
      authenticator: createAuthenticator({ tokenFile: authFile }),
      audit: { counts: audit.counts, record: (e) => (audited.push(e), record(e)) },
    });
    app = createTaskwireClient(running.url, { token: tokens.app });
    ops = createTaskwireClient(running.url, { token: tokens.ops });
  });
  afterAll(() => running?.close());

  it("answers 401 without credentials and 403 without the role, each audited and counted", async () => {
    const before = await series(running.url);
    const none = await scrape(running.url, null);
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect(await none.text()).toContain('"metrics" role');
    const wrong = await scrape(running.url, newToken());
    expect(wrong.status).toBe(401);
    const app = await scrape(running.url, tokens.app);
    expect(app.status).toBe(403);
    expect(await app.text()).toMatch(/needs the "metrics" role, which principal "app" does not have/);
    expect(audited.slice(-3).map((e) => [e.kind, e.method, e.principal])).toEqual([
      ["unauthenticated", "/metrics", undefined],
      ["unauthenticated", "/metrics", undefined],
      ["permission-denied", "/metrics", "app"],
    ]);
    const after = await series(running.url);
    const failures = (kind: string, s: Series) => s.get(`taskwire_auth_failures_total{kind="${kind}"}`) ?? 0;
    expect(failures("unauthenticated", after) - failures("unauthenticated", before)).toBe(2);
    expect(failures("permission_denied", after) - failures("permission_denied", before)).toBe(1);
  });

  it("serves the text format (0.0.4) with the process series", async () => {
    const res = await scrape(running.url);
    expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const s = parse(await res.text());
    expect(s.get('taskwire_build_info{version="0.1.0",source="sim"}')).toBe(1);
    expect(s.get("process_cpu_seconds_total")).toBeGreaterThan(0);
    expect(s.get("process_resident_memory_bytes")).toBeGreaterThan(0);
  });

  it("counts unary RPCs by method, code and role, with their latency", async () => {
    const key = (code: string, role: string) =>
      `taskwire_rpc_requests_total{method="GetInfo",code="${code}",role="${role}"}`;
    const before = await series(running.url);
    for (let i = 0; i < 7; i++) await app.getInfo({});
    await expect(ops.getInfo({})).rejects.toThrow(/needs the "read" role/);
    const after = await series(running.url);
    const delta = (k: string) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
    expect(delta(key("ok", "subscribe"))).toBe(7);
    expect(delta(key("permission_denied", "metrics"))).toBe(1);
    expect(delta('taskwire_rpc_duration_seconds_count{method="GetInfo",code="ok"}')).toBe(7);
    expect(delta('taskwire_rpc_duration_seconds_bucket{le="+Inf",method="GetInfo",code="ok"}')).toBe(7);
  });

  it("counts records per CPU as the source produced them, kernel drops per CPU, streams and their ends", async () => {
    const stream = await collectExits(app, { cpumask: "0-7" });
    expect((await series(running.url)).get("taskwire_streams")).toBe(1);
    source.kernel.exitNow(500);
    await eventually(() => stream.events.length >= 500);
    sink.kernelLoss(2, 7);
    await eventually(() => stream.events.some((e) => e.event.case === "lost"));
    let s = await series(running.url);
    expect(sum(s, "taskwire_records_received_total{")).toBe(source.info().records);
    expect(sum(s, "taskwire_records_received_total{")).toBeGreaterThanOrEqual(500);
    const cpus = [...s.keys()].filter((k) => k.startsWith("taskwire_records_received_total{"));
    expect(cpus.length).toBeGreaterThan(1); // one series per CPU that had exits
    expect(s.get('taskwire_kernel_drops_total{source="sim",cpu="2"}')).toBe(7);
    expect(s.get('taskwire_subscriber_drops_total{reason="kernel_overflow"}')).toBe(7);
    expect(s.get("taskwire_listeners")).toBe(1);
    expect(s.get("taskwire_memory_slabs_bytes")).toBeGreaterThanOrEqual(0); // part of what is used
    expect(s.get("taskwire_memory_slabs_bytes")).toBeLessThanOrEqual(s.get("taskwire_memory_used_bytes")!);
    const ended = (code: string) =>
      `taskwire_rpc_requests_total{method="SubscribeExits",code="${code}",role="subscribe"}`;
    const canceled = s.get(ended("canceled")) ?? 0;
    await stream.stop();
    await eventually(async () => (await series(running.url)).get("taskwire_streams") === 0);
    s = await series(running.url);
    expect(s.get(ended("canceled"))).toBe(canceled + 1);
    expect(s.get('taskwire_rpc_stream_duration_seconds_count{method="SubscribeExits",code="canceled"}')).toBe(
      canceled + 1,
    );
  });

  // rate() and increase() count from a series' first sample: a loss series that appeared at its first drops would hide them.
  it("has kernel-drop and discard series, at 0, for every CPU that produced records, before any loss", async () => {
    const stream = await collectExits(app, { cpumask: "0-7" });
    try {
      source.kernel.exitNow(200);
      await eventually(() => stream.events.length >= 200);
      const s = await series(running.url);
      const cpus = [...s.keys()]
        .filter((k) => k.startsWith("taskwire_records_received_total{"))
        .map((k) => /cpu="(\d+)"/.exec(k)![1]!);
      expect(cpus.length).toBeGreaterThan(1);
      for (const cpu of cpus) {
        expect(s.get(`taskwire_kernel_drops_total{source="sim",cpu="${cpu}"}`)).toBeGreaterThanOrEqual(0);
        expect(s.get(`taskwire_source_discards_total{source="sim",cpu="${cpu}"}`)).toBeGreaterThanOrEqual(0);
      }
    } finally {
      await stream.stop();
    }
  });

  // A record the source read but could not decode or pass on is a server bug, not the kernel's drop: told apart so
  // that nobody raises socket buffers for it.
  it("counts records the source could not pass on apart from kernel drops: per CPU, SOURCE_ERROR markers, GetInfo", async () => {
    let discarded = 0;
    const info = source.info.bind(source);
    source.info = () => ({ ...info(), discarded }); // what a source that discards reports
    const stream = await collectExits(app, { cpumask: "3" });
    try {
      const before = await series(running.url);
      discarded += 2;
      sink.sourceLoss(3, 2);
      await eventually(() => stream.events.some((e) => e.event.case === "lost"));
      const lost = stream.events.find((e) => e.event.case === "lost")!;
      expect(lost.cpu).toBe(3);
      expect(lost.event.value).toMatchObject({ count: 2n, reason: LossReason.SOURCE_ERROR });
      const s = await series(running.url);
      const delta = (k: string) => (s.get(k) ?? 0) - (before.get(k) ?? 0);
      expect(s.get('taskwire_source_discards_total{source="sim",cpu="3"}')).toBe(2);
      expect(delta('taskwire_subscriber_drops_total{reason="source_error"}')).toBe(2);
      expect(delta('taskwire_subscriber_drops_total{reason="kernel_overflow"}')).toBe(0);
      expect(sum(s, "taskwire_kernel_drops_total{") - sum(before, "taskwire_kernel_drops_total{")).toBe(0);
      const got = await app.getInfo({ listeners: true });
      expect(got.sourceDiscards).toBe(2n);
      expect(got.listenerDetails.map((l) => [l.cpumask, l.lostSourceError, l.lostKernelOverflow])).toEqual([
        ["3", 2n, 0n],
      ]);
    } finally {
      source.info = info;
      await stream.stop();
    }
  });

  it("keeps its series count whatever hostile callers send", async () => {
    const hostile = async (i: number) => {
      const rand = crypto.randomUUID();
      const auth = { authorization: `Bearer ${i % 2 ? tokens.app : rand}` };
      await fetch(`${running.url}/taskwire.v1.TaskStats/${rand}`, { method: "POST", headers: auth, body: "{}" });
      await fetch(`${running.url}/taskwire.v1.${rand}/GetInfo`, { method: "POST", headers: auth, body: "{}" });
      await fetch(`${running.url}/taskwire.v1.TaskStats/Deregister`, {
        method: "POST",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({ listenerId: rand, cpumask: "0" }),
      });
    };
    // The first calls may add the codes they end with (bounded by Connect's 17); after that, nothing grows.
    for (let i = 0; i < 100; i++) await hostile(i);
    const settled = await series(running.url);
    for (let i = 100; i < 1000; i++) await hostile(i);
    const text = await (await scrape(running.url)).text();
    // V8's garbage collection kinds (minor, major, incremental, weakcb: at most 4) appear as each first runs.
    const ours = (s: Series) => new Map([...s].filter(([k]) => !k.startsWith("nodejs_gc_duration_seconds")));
    const after = ours(parse(text));
    expect([...after.keys()].filter((k) => !settled.has(k))).toEqual([]);
    expect(after.size).toBe(ours(settled).size);
    expect(text).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-/); // no listener id or path echoed into a label
    const denied = sum(after, 'taskwire_rpc_requests_total{method="Deregister"');
    expect(denied).toBeGreaterThanOrEqual(500);
  });
});

describe("/metrics under a scrape flood", () => {
  it("renders at most once per second however many scrape, concurrent scrapes sharing one render", async () => {
    const source = createSimSource({ cpus: 2, exitRate: 100 });
    const running = await startServer(source, {}, { authenticator: createAuthenticator({ tokenFile: authFile }) });
    const renders = (s: Series) => s.get("taskwire_metrics_renders_total") ?? 0;
    try {
      const before = renders(await series(running.url));
      const start = performance.now();
      let scrapes = 0;
      // 6 waves of 50 concurrent scrapes, as fast as they answer.
      for (let wave = 0; wave < 6; wave++) {
        const bodies = await Promise.all(
          Array.from({ length: 50 }, async () => {
            const res = await scrape(running.url);
            expect(res.status).toBe(200);
            expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
            return await res.text();
          }),
        );
        scrapes += bodies.length;
        expect(new Set(bodies).size).toBe(1); // one wave, one render
      }
      const seconds = (performance.now() - start) / 1000;
      const after = renders(await series(running.url));
      // A render every second at most (one more for the first and one for the scrape that reads the count).
      expect(after - before).toBeLessThanOrEqual(Math.ceil(seconds) + 2);
      expect(after - before).toBeLessThan(scrapes / 10);
      // Refused scrapes never render.
      for (let i = 0; i < 20; i++) expect((await scrape(running.url, null)).status).toBe(401);
      await new Promise((r) => setTimeout(r, 1100)); // past the period: the next scrape renders afresh
      const fresh = await series(running.url);
      expect(renders(fresh)).toBe(after + 1);
      expect(fresh.get('taskwire_auth_failures_total{kind="unauthenticated"}')).toBeGreaterThanOrEqual(20);
    } finally {
      await running.close();
    }
  });
});

describe("/metrics switched off", () => {
  it("is absent (404) and nothing is counted", async () => {
    const source = createSimSource({ cpus: 2, exitRate: 0 });
    const running = await startServer(source, {}, { metrics: false });
    try {
      expect((await scrape(running.url)).status).toBe(404);
    } finally {
      await running.close();
    }
  });
});

const missingNetlink = await netlinkMissing();
describe.skipIf(missingNetlink !== undefined)(
  missingNetlink === undefined
    ? "/metrics on the real kernel"
    : `/metrics on the real kernel SKIPPED: ${missingNetlink}`,
  () => {
    it("counts records per CPU and reports the reader thread's own CPU time", async () => {
      const source = await openNetlinkSource();
      const running = await startServer(source, {}, { metricsCacheMs: 0 });
      try {
        const stream = await collectExits(running.client, { cpumask: source.possible.list });
        for (let i = 0; i < 20; i++) execFileSync("/bin/true");
        await eventually(() => stream.events.length >= 20);
        await stream.stop();
        // Other tests' processes exit on the watched CPUs too: the scrape's count lies between the counts before and after it.
        const before = source.info().records;
        const s = await series(running.url);
        const scraped = sum(s, 'taskwire_records_received_total{source="netlink"');
        expect(scraped).toBeGreaterThanOrEqual(Math.max(before, 20));
        expect(scraped).toBeLessThanOrEqual(source.info().records);
        const reader = s.get("taskwire_netlink_reader_cpu_seconds_total");
        expect(reader).toBeGreaterThanOrEqual(0);
        // The worker's thread, not the process: less than the process's whole CPU time.
        expect(reader).toBeLessThan(s.get("process_cpu_seconds_total")!);
        expect(source.readerCpuSeconds!()).toBeGreaterThanOrEqual(reader!);
      } finally {
        await running.close();
      }
    });
  },
);

describe("/proc stat and schedstat parsing", () => {
  it("reads utime + stime past a comm with spaces and parentheses", () => {
    const line = "77 (a b) c) S 1 77 77 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 12 0 0";
    expect(parseStatCpuSeconds(line)).toBe(3);
  });

  it("reads a schedstat line's run time in seconds, and nothing from an empty one", () => {
    expect(parseSchedstatSeconds("1500000000 20000 7\n")).toBe(1.5);
    expect(parseSchedstatSeconds("")).toBeUndefined();
    expect(parseSchedstatSeconds("x 1 2")).toBeUndefined();
  });
});

// --- A real Prometheus ------------------------------------------------------

const PROMETHEUS = "/usr/bin/prometheus", PROMTOOL = "/usr/bin/promtool";
const missingTool = [PROMETHEUS, PROMTOOL].find((p) => !existsSync(p));
if (missingTool !== undefined && process.env["TASKWIRE_REQUIRE_INTEROP"] === "1") {
  throw new Error(`TASKWIRE_REQUIRE_INTEROP=1 but ${missingTool} is missing (apt-get install prometheus)`);
}

async function freePort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

describe.skipIf(missingTool !== undefined)(
  missingTool === undefined
    ? "a real Prometheus"
    : `a real Prometheus SKIPPED: needs ${missingTool} (Debian: prometheus)`,
  () => {
    let running: Running;
    let prometheus: ChildProcess | undefined;
    let log = "";
    beforeAll(async () => {
      const source = createSimSource({ cpus: 4, exitRate: 2000, seed: 5 });
      running = await startServer(source, {}, { authenticator: createAuthenticator({ tokenFile: authFile }) });
    });
    afterAll(async () => {
      if (prometheus?.exitCode === null) {
        prometheus.kill("SIGTERM");
        await new Promise((r) => prometheus!.once("exit", r));
      }
      await running?.close();
    });

    it("promtool check metrics finds nothing to fix in the exposition", async () => {
      const body = await (await scrape(running.url)).text();
      let out = "";
      try {
        out = execFileSync(PROMTOOL, ["check", "metrics"], { input: body, encoding: "utf8", stdio: "pipe" });
      } catch (err) {
        const e = err as { stdout: string; stderr: string };
        throw new Error(`promtool check metrics: ${e.stdout}${e.stderr}`);
      }
      expect(out).toBe("");
    });

    it("scrapes /metrics with a bearer token, and a query gets the series back", async () => {
      const port = await freePort();
      const data = mkdtempSync(join(dir, "tsdb-"));
      const config = join(dir, "prometheus.yml");
      const target = new URL(running.url).host;
      writeFileSync(
        config,
        [
          "global:",
          "  scrape_interval: 1s",
          "scrape_configs:",
          "  - job_name: taskwire",
          "    scrape_interval: 1s",
          "    authorization:",
          `      credentials: ${tokens.ops}`,
          "    static_configs:",
          `      - targets: ["${target}"]`,
          "",
        ].join("\n"),
      );
      const app = createTaskwireClient(running.url, { token: tokens.app });
      for (let i = 0; i < 3; i++) await app.getInfo({});
      const stream = await collectExits(app, { cpumask: "0-3" }); // records flow to watched CPUs only
      prometheus = spawn(PROMETHEUS, [
        `--config.file=${config}`,
        `--storage.tsdb.path=${data}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ], { stdio: ["ignore", "ignore", "pipe"] });
      prometheus.stderr!.on("data", (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
      const query = async (q: string) => {
        const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`);
        const body = (await res.json()) as {
          data: { result: { metric: Record<string, string>; value: [number, string] }[] };
        };
        return body.data.result;
      };
      try {
        await eventually(async () => {
          try {
            return (await query('up{job="taskwire"} == 1')).length === 1;
          } catch {
            return false; // not listening yet
          }
        }, 20_000);
      } catch (err) {
        throw new Error(`${(err as Error).message}; prometheus said: ${log}`);
      }
      // The first scrape may get the exposition promtool's scrape rendered (shared for a second).
      const getInfo = async () =>
        (await query('taskwire_rpc_requests_total{method="GetInfo",code="ok"}')).map((r) => [
          r.metric["role"],
          r.value[1],
        ]);
      await eventually(async () => (await getInfo()).length === 1, 10_000);
      expect(await getInfo()).toEqual([["subscribe", "3"]]);
      await eventually(async () => (await query("sum(taskwire_records_received_total)")).length === 1, 10_000);
      const [records] = await query("sum(taskwire_records_received_total)");
      expect(Number(records!.value[1])).toBeGreaterThan(0);
      expect((await query("process_resident_memory_bytes")).length).toBe(1);
      await stream.stop();
    }, 40_000);
  },
);
