import { create, fromBinary, toBinary, toJson } from "@bufbuild/protobuf";
import { createTaskwireClient } from "@taskwire/client";
import fc from "fast-check";
import { arbitraryStats } from "./arbitraries.ts";
import { afterEach, describe, expect, it } from "vitest";
import { type TaskStats, TaskStatsSchema } from "../src/gen/taskwire/kernel/v1/taskstats_pb.ts";
import { type ExitEvent, ExitEventSchema, SubscribeExitsResponseSchema } from "../src/gen/taskwire/v1/taskstats_pb.ts";
import { BatchBuffer, envelopedBatch, preEncodedBatch } from "../src/rpc/fast-binary/batch.ts";
import { preEncodedEnvelope } from "../src/rpc/fast-binary/pre-encoded.ts";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { toExitEvent } from "../src/rpc/convert.ts";
import type { QueueItem } from "../src/core/event-queue.ts";
import type { ExitRecord } from "../src/kernel/exit-record.ts";
import { maxStatsSize, writeStats } from "../src/rpc/fast-binary/task-stats.ts";
import { createStatsVector, SLOT, SLOTS, type StatsVector, toTaskStats } from "../src/kernel/stats-vector.ts";
import { TASKSTATS_FIELDS } from "../src/kernel/taskstats.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { collectExits, eventually, type Running, startServer } from "./helpers.ts";

describe("fast TaskStats encoding", () => {
  it("writes exactly the bytes toBinary writes, for any record", () => {
    fc.assert(
      fc.property(arbitraryStats, (s) => {
        const b = new Uint8Array(maxStatsSize(s));
        const fast = b.subarray(0, writeStats(b, 0, s));
        expect(fast).toEqual(toBinary(TaskStatsSchema, s));
        expect(fromBinary(TaskStatsSchema, fast)).toEqual(fromBinary(TaskStatsSchema, toBinary(TaskStatsSchema, s)));
      }),
      { numRuns: 500 },
    );
  });
});

/** Any stats vector: each slot set or not (integers below 2^53), any comm. */
const arbitraryVector: fc.Arbitrary<StatsVector> = fc.tuple(
  fc.array(fc.option(fc.maxSafeNat(), { nil: undefined }), { minLength: SLOTS, maxLength: SLOTS }),
  fc.option(fc.string({ maxLength: 31, unit: "grapheme" }), { nil: undefined }),
).map(([values, comm]) => {
  const v = createStatsVector();
  values.forEach((x, i) => {
    if (x !== undefined && i !== SLOT.acComm) v.values[i] = TASKSTATS_FIELDS[i]!.type === "u64" ? x : x % 2 ** 32;
  });
  v.comm = comm;
  return v;
});

/** Any receive time from the epoch to past 2100, to the microsecond (the whole second and zero parts included). */
const arbitraryReceivedAt = fc.oneof(
  fc.integer({ min: 0, max: 2 ** 52 }).map((us) => us / 1000),
  fc.integer({ min: 0, max: 2 ** 32 }).map((s) => s * 1000),
  // Any double: sub-microsecond fractions round, times before the epoch clamp to it.
  fc.double({ min: -1e9, max: 2 ** 42, noNaN: true }),
  fc.constant(0),
);

const arbitraryVectorItem: fc.Arbitrary<QueueItem<ExitRecord>> = fc.record({
  seq: fc.nat({ max: 2 ** 53 - 1 }),
  receivedAtMs: arbitraryReceivedAt,
  cpu: fc.nat({ max: 8191 }),
  pid: fc.nat({ max: 0xffffffff }),
  tgid: fc.nat({ max: 0xffffffff }),
  pidVector: arbitraryVector,
  tgidVector: fc.option(arbitraryVector, { nil: undefined }),
}).map(({ seq, pidVector, tgidVector, ...r }) => ({
  kind: "exit" as const,
  seq,
  record: {
    ...r,
    cpuSeq: 0,
    pidVector,
    tgidVector,
    pidStats: toTaskStats(pidVector),
    tgidStats: tgidVector && toTaskStats(tgidVector),
  },
}));

describe("fast encoding from stats vectors", () => {
  it("writes exactly toBinary(toTaskStats(vector)), for any vector", () => {
    fc.assert(
      fc.property(arbitraryVector, (v) => {
        const b = new Uint8Array(maxStatsSize(v));
        const end = writeStats(b, 0, v);
        expect(b.subarray(0, end)).toEqual(toBinary(TaskStatsSchema, toTaskStats(v)));
      }),
      { numRuns: 300 },
    );
  });
});

const arbitraryItem: fc.Arbitrary<QueueItem<ExitRecord>> = fc.oneof(
  arbitraryVectorItem,
  fc.record({
    seq: fc.nat({ max: 2 ** 53 - 1 }),
    record: fc.record({
      cpu: fc.nat({ max: 8191 }),
      cpuSeq: fc.nat(),
      receivedAtMs: arbitraryReceivedAt,
      pid: fc.nat({ max: 0xffffffff }),
      tgid: fc.nat({ max: 0xffffffff }),
      pidStats: arbitraryStats,
      tgidStats: fc.option(arbitraryStats, { nil: undefined }),
    }),
  }).map((x) => ({ kind: "exit" as const, ...x })),
  fc.record({
    first: fc.nat({ max: 2 ** 40 }),
    n: fc.nat({ max: 1000 }),
    cpu: fc.integer({ min: -1, max: 4095 }),
    reason: fc.constantFrom("subscriber-overflow", "kernel-overflow", "retention", "restart"),
  }).map(({ first, n, ...rest }) =>
    ({ kind: "lost" as const, first: first + 1, last: first + 1 + n, ...rest }) as QueueItem<ExitRecord>
  ),
);

describe("pre-encoded batches", () => {
  it("decode to exactly the response built the ordinary way, for any items", () => {
    fc.assert(
      fc.property(fc.array(arbitraryItem, { maxLength: 8 }), fc.nat({ max: 100_000 }), (items, queued) => {
        const fast = toBinary(SubscribeExitsResponseSchema, preEncodedBatch(items, queued));
        const ordinary = create(SubscribeExitsResponseSchema, { events: items.map((i) => toExitEvent(i)), queued });
        expect(fromBinary(SubscribeExitsResponseSchema, fast)).toEqual(
          fromBinary(SubscribeExitsResponseSchema, toBinary(SubscribeExitsResponseSchema, ordinary)),
        );
      }),
      { numRuns: 300 },
    );
  });

  it("in a stream's reused buffer, each batch serializes as its own, whatever came before", () => {
    // Batches of any sizes in turn (growing past the buffer, shrinking after a large one, released when idle),
    // each serialized before the next is encoded, as connect-es does.
    const batches = fc.array(fc.tuple(fc.array(arbitraryItem, { maxLength: 40 }), fc.boolean()), { maxLength: 80 });
    fc.assert(
      fc.property(batches, (steps) => {
        const buffer = new BatchBuffer();
        for (const [items, idle] of steps) {
          const fast = toBinary(SubscribeExitsResponseSchema, preEncodedBatch(items, 1, buffer));
          expect(fast).toEqual(toBinary(SubscribeExitsResponseSchema, preEncodedBatch(items, 1)));
          if (idle) buffer.release();
        }
      }),
      { numRuns: 20 },
    );
  });

  it("an idle stream's buffer lets go of its last envelope (the carrier message goes with it)", () => {
    const scratch = new BatchBuffer();
    const item = fc.sample(arbitraryItem, { numRuns: 1, seed: 7 })[0]!;
    const first = envelopedBatch([item], 3, scratch);
    const held = preEncodedEnvelope(first);
    expect(envelopedBatch([item], 4, scratch)).toBe(first); // while busy: one carrier, reused
    scratch.release();
    const after = envelopedBatch([item], 5, scratch);
    expect(after).not.toBe(first); // released: the old carrier (and the envelope it held) is not kept
    expect(preEncodedEnvelope(first)).not.toBe(held); // the busy carrier had moved on to its next envelope
    expect(after.queued).toBe(5);
  });

  it("as finished envelopes: each exactly the envelope connect-es would make of the same batch", () => {
    // One stream's batches in turn: the scratch buffer is reused, each envelope must stay as it was written.
    // Batches of exits alone (written straight into the envelope) and batches with loss markers (through the
    // stream's buffer) in any order.
    const exitsOnly = fc.array(arbitraryItem.filter((i) => i.kind !== "lost"), { minLength: 1, maxLength: 30 });
    const items = fc.oneof(exitsOnly, fc.array(arbitraryItem, { maxLength: 30 }));
    const batches = fc.array(fc.tuple(items, fc.nat({ max: 300_000 })), { maxLength: 30, size: "medium" });
    fc.assert(
      fc.property(batches, (steps) => {
        const scratch = new BatchBuffer();
        const sent = steps.map(([items, queued]) => {
          const message = envelopedBatch(items, queued, scratch);
          expect(message.queued).toBe(queued);
          const envelope = preEncodedEnvelope(message)!; // a Buffer on Node: compared as plain bytes
          return { envelope: new Uint8Array(envelope.buffer, envelope.byteOffset, envelope.byteLength), items, queued };
        });
        for (const { envelope, items, queued } of sent) {
          expect(envelope).toEqual(
            encodeEnvelope(0, toBinary(SubscribeExitsResponseSchema, preEncodedBatch(items, queued))),
          );
        }
      }),
      { numRuns: 40 },
    );
  });

  it("length-prefixes a record past 16 KiB (a 20,000-character comm)", () => {
    const stats = { $typeName: "taskwire.kernel.v1.TaskStats", acComm: "é".repeat(20_000), acPid: 7 } as TaskStats;
    const item: QueueItem<ExitRecord> = {
      kind: "exit",
      seq: 1,
      record: { cpu: 3, cpuSeq: 1, receivedAtMs: 1_796_000_000_123.456, pid: 7, tgid: 7, pidStats: stats },
    };
    const decoded = fromBinary(
      SubscribeExitsResponseSchema,
      toBinary(SubscribeExitsResponseSchema, preEncodedBatch([item], 0)),
    );
    expect(decoded.events[0]?.event.value).toMatchObject({ pid: 7, pidStats: { acComm: stats.acComm, acPid: 7 } });
  });
});

describe("binary and JSON subscribers", () => {
  let running: Running | undefined;
  afterEach(() => running?.close());

  it("receive the same events (pre-encoded stats for binary, full messages for JSON)", async () => {
    const source = createSimSource({ cpus: 4, exitRate: 0, seed: 8 }) as SimSource;
    running = await startServer(source);
    const json = createTaskwireClient(running.url, { useBinaryFormat: false });
    const [a, b] = await Promise.all([
      collectExits(running.client, { cpumask: "0-3" }),
      collectExits(json, { cpumask: "0-3" }),
    ]);
    source.kernel.exitNow(400);
    await eventually(() => a.events.length >= 400 && b.events.length >= 400);
    await Promise.all([a.stop(), b.stop()]);
    const norm = (evs: ExitEvent[]) => evs.slice(0, 400).map((e) => toJson(ExitEventSchema, e));
    expect(norm(a.events)).toEqual(norm(b.events));
    expect(a.events.some((e) => e.event.case === "exit" && e.event.value.tgidStats !== undefined)).toBe(true);
    expect(a.events.every((e) => e.event.case !== "exit" || e.event.value.pidStats?.acComm)).toBe(true);
  });
});
