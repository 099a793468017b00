import { fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import { createTaskwireClient } from "@taskwire/client";
import fc from "fast-check";
import { arbitraryStats } from "./arbitraries.ts";
import { afterEach, describe, expect, it } from "vitest";
import { TaskStatsSchema } from "../src/gen/taskwire/kernel/v1/taskstats_pb.ts";
import { ExitEventSchema, type ExitEvent } from "../src/gen/taskwire/v1/taskstats_pb.ts";
import { encodeTaskStatsFast } from "../src/service/_fast-encode.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { collectExits, eventually, startServer, type Running } from "./helpers.ts";

describe("fast TaskStats encoding", () => {
  it("writes exactly the bytes toBinary writes, for any record", () => {
    fc.assert(fc.property(arbitraryStats, (s) => {
      const fast = encodeTaskStatsFast(s);
      expect(fast).toEqual(toBinary(TaskStatsSchema, s));
      expect(fromBinary(TaskStatsSchema, fast)).toEqual(fromBinary(TaskStatsSchema, toBinary(TaskStatsSchema, s)));
    }), { numRuns: 500 });
  });
});

describe("binary and JSON subscribers", () => {
  let running: Running | undefined;
  afterEach(() => running?.close());

  it("receive the same events (pre-encoded stats for binary, full messages for JSON)", async () => {
    const source = createSimSource({ cpus: 4, exitRate: 0, seed: 8 }) as SimSource;
    running = await startServer(source);
    const json = createTaskwireClient(running.url, { useBinaryFormat: false });
    const [a, b] = await Promise.all([collectExits(running.client, { cpumask: "0-3" }), collectExits(json, { cpumask: "0-3" })]);
    source.kernel.exitNow(400);
    await eventually(() => a.events.length >= 400 && b.events.length >= 400);
    await Promise.all([a.stop(), b.stop()]);
    const norm = (evs: ExitEvent[]) => evs.slice(0, 400).map((e) => toJson(ExitEventSchema, e));
    expect(norm(a.events)).toEqual(norm(b.events));
    expect(a.events.some((e) => e.event.case === "exit" && e.event.value.tgidStats !== undefined)).toBe(true);
    expect(a.events.every((e) => e.event.case !== "exit" || e.event.value.pidStats?.acComm)).toBe(true);
  });
});
