/** `taskwire top`: the aggregation (pure) and `top --once --json` against a real (simulated-kernel) server. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { create } from "@bufbuild/protobuf";
import { ExitEventSchema, LossReason } from "@taskwire/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTopAggregator, OTHER, type TopOptions } from "../src/cli/top-aggregate.ts";
import { formatTop } from "../src/cli/top-command.ts";
import { spawnServer } from "./helpers.ts";

function exitOf(
  comm: string,
  o: { uid?: number; exit?: number; utime?: bigint; delay?: bigint; count?: bigint; rss?: bigint } = {},
) {
  return create(ExitEventSchema, {
    seq: 1n,
    cpu: 0,
    event: {
      case: "exit",
      value: {
        pid: 5,
        tgid: 5,
        pidStats: {
          acComm: comm,
          acUid: o.uid ?? 0,
          acExitcode: o.exit ?? 0,
          acUtime: o.utime ?? 0n,
          acStime: 0n,
          cpuDelayTotal: o.delay ?? 0n,
          cpuCount: o.count ?? 0n,
          hiwaterRss: o.rss ?? 0n,
          readBytes: 10n,
          writeBytes: 5n,
        },
      },
    },
  });
}

const opts = (o: Partial<TopOptions> = {}): TopOptions => ({
  windowSec: 10,
  groupBy: "comm",
  sort: "exits",
  maxGroups: 100,
  startMs: 0,
  ...o,
});

describe("top aggregation", () => {
  it("sums, averages delays per delay event, keeps the peak RSS, counts nonzero exits", () => {
    const agg = createTopAggregator(opts());
    agg.add(exitOf("make", { utime: 1000n, delay: 300n, count: 3n, rss: 100n }), 10_000);
    agg.add(exitOf("make", { utime: 500n, delay: 100n, count: 1n, rss: 400n, exit: 256 }), 10_500);
    agg.add(exitOf("cc", {}), 11_000);
    const s = agg.snapshot(15_000);
    expect(s.exits).toBe(3);
    const make = s.rows.find((r) => r.key === "make")!;
    expect(make).toMatchObject({ exits: 2, failed: 1, cpuUs: 1500, peakRssKiB: 400, ioBytes: 30, cpuDelayAvgNs: 100 });
    expect(make.exitsPerSec).toBe(0.2);
    expect(s.rows[0]!.key).toBe("make"); // sorted by exits
  });

  it("forgets exits older than the window (to the second: a view covers the buckets that overlap it)", () => {
    const agg = createTopAggregator(opts({ windowSec: 2 }));
    agg.add(exitOf("old"), 1_000);
    agg.add(exitOf("new"), 2_500);
    expect(agg.snapshot(2_900).rows.map((r) => r.key).sort()).toEqual(["new", "old"]);
    // [1.1 s, 3.1 s] overlaps old's second [1 s, 2 s): it is in the view, and the rates are over 2.1 s.
    const s = agg.snapshot(3_100);
    expect(s.rows.map((r) => r.key).sort()).toEqual(["new", "old"]);
    expect(s.coveredSec).toBeCloseTo(2.1);
    expect(agg.snapshot(4_000).rows.map((r) => r.key)).toEqual(["new"]);
    expect(agg.snapshot(5_000).rows).toEqual([]);
  });

  it("holds the whole window when it is full, whatever the phase of the wall-clock second (top --once)", () => {
    // Collecting began 0.9 s into a second; --once --window 1 reads the view one second later.
    const agg = createTopAggregator(opts({ windowSec: 1, startMs: 10_900 }));
    for (const t of [10_950, 11_000, 11_500, 11_850]) agg.add(exitOf("sh"), t);
    const s = agg.snapshot(11_905);
    expect(s.exits).toBe(4);
    expect(s.coveredSec).toBeCloseTo(1.005);
    expect(s.rows[0]!.exitsPerSec).toBeCloseTo(4 / 1.005);
  });

  it("reads a steady rate as that rate at every moment of a second", () => {
    const agg = createTopAggregator(opts({ windowSec: 10, startMs: 250 }));
    let t = 300;
    for (const now of [15_000, 15_260, 15_500, 15_990, 20_001, 29_999]) {
      for (; t <= now; t += 10) agg.add(exitOf("sh"), t); // 100 exits a second
      const s = agg.snapshot(now);
      expect(s.coveredSec).toBeGreaterThanOrEqual(10);
      expect(s.coveredSec).toBeLessThan(11);
      expect(Math.abs(s.rows[0]!.exitsPerSec - 100)).toBeLessThan(1);
    }
  });

  it("keeps at most --max-groups groups per second, folding the rest into (other)", () => {
    const agg = createTopAggregator(opts({ maxGroups: 3 }));
    for (let i = 0; i < 1000; i++) agg.add(exitOf(`c${i}`), 1_000);
    const s = agg.snapshot(1_500);
    expect(s.groups).toBe(4);
    expect(s.rows.find((r) => r.key === OTHER)!.exits).toBe(997);
    expect(s.exits).toBe(1000);
  });

  it("groups by uid, sorts by another column, and counts loss", () => {
    const agg = createTopAggregator(opts({ groupBy: "uid", sort: "cpu" }));
    agg.add(exitOf("a", { uid: 1000, utime: 5n }), 1_000);
    agg.add(exitOf("b", { uid: 0, utime: 50n }), 1_000);
    agg.add(exitOf("c", { uid: 1000 }), 1_000);
    agg.add(
      create(ExitEventSchema, {
        event: {
          case: "lost",
          value: { count: 4n, firstSeq: 1n, lastSeq: 4n, reason: LossReason.SUBSCRIBER_OVERFLOW },
        },
      }),
      1_000,
    );
    const s = agg.snapshot(1_200);
    expect(s.rows.map((r) => [r.key, r.exits])).toEqual([["0", 1], ["1000", 2]]);
    expect(s.lost).toBe(4);
    expect(formatTop(s, "h\u001b[2Jx")).toMatch(/^taskwire top - h\\u001b\[2Jx - .* LOST 4 event\(s\)/);
  });

  it("refuses a window or cap that would not bound anything", () => {
    expect(() => createTopAggregator(opts({ windowSec: 0 }))).toThrow(RangeError);
    expect(() => createTopAggregator(opts({ maxGroups: 0 }))).toThrow(RangeError);
  });
});

describe("taskwire top (CLI)", () => {
  const root = new URL("..", import.meta.url).pathname;
  const bin = `${root}bin/taskwire.js`;
  let server: Awaited<ReturnType<typeof spawnServer>>;
  beforeAll(async () => {
    server = await spawnServer(
      "node",
      [bin, "serve", "--source", "sim", "--port", "0", "--sim-exit-rate", "300"],
      root,
    );
  });
  afterAll(() => server.stop());

  it("top --once --json collects one window and prints one JSON document", async () => {
    const started = Date.now();
    const { stdout } = await promisify(execFile)(
      "node",
      [bin, "top", "--once", "--json", "--window", "2", "--by", "comm", "--sort", "exits", "--url", server.url],
      { cwd: root },
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
    const doc = JSON.parse(stdout);
    expect(doc).toMatchObject({ window_sec: 2, group_by: "comm", sort: "exits", lost: 0 });
    expect(doc.exits).toBeGreaterThan(100); // 300/s simulated for 2 s
    const sum = doc.rows.reduce((n: number, r: { exits: number }) => n + r.exits, 0);
    expect(sum).toBeLessThanOrEqual(doc.exits);
    // Every key the README documents for top --json rows.
    const keys = "key exits exits_per_sec failed cpu_us cpu_delay_ns cpu_delay_count cpu_delay_avg_ns io_delay_ns " +
      "io_delay_count io_delay_avg_ns mem_delay_ns mem_delay_count mem_delay_avg_ns peak_rss_kib io_bytes";
    expect(Object.keys(doc.rows[0]).sort()).toEqual(keys.split(" ").sort());
    expect(doc.rows[0].exits).toBeGreaterThanOrEqual(doc.rows.at(-1).exits);
  }, 20_000);

  it("a bad --sort or --by is a usage error (status 2)", async () => {
    const r = await promisify(execFile)("node", [bin, "top", "--sort", "nope", "--url", server.url], { cwd: root })
      .catch((e: { code: number; stderr: string }) => e);
    expect((r as { code: number }).code).toBe(2);
    expect((r as { stderr: string }).stderr).toMatch(/^taskwire: option '--sort <column>' argument 'nope' is invalid/);
  });
});
