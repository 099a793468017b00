/** fast-check arbitraries for taskwire's messages, shared by the codec property tests. */
import { create, ScalarType } from "@bufbuild/protobuf";
import fc from "fast-check";
import { type TaskStats, TaskStatsSchema } from "../src/gen/taskwire/kernel/v1/taskstats_pb.ts";
import {
  type ExitEvent,
  LossReason,
  type SubscribeExitsResponse,
  SubscribeExitsResponseSchema,
} from "../src/gen/taskwire/v1/taskstats_pb.ts";

const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const u32 = fc.nat({ max: 0xffffffff });

/** Any TaskStats: each field set or not, 64-bit values across the whole range, any text. */
export const arbitraryStats: fc.Arbitrary<TaskStats> = fc.record(
  Object.fromEntries(TaskStatsSchema.fields.map((f) => {
    const arb: fc.Arbitrary<unknown> = f.fieldKind === "scalar" && f.scalar === ScalarType.STRING
      ? fc.string({ maxLength: 31, unit: "grapheme" })
      : f.fieldKind === "scalar" && f.scalar === ScalarType.UINT64
      ? u64
      : u32;
    return [f.localName, fc.option(arb, { nil: undefined })];
  })),
).map((r) =>
  ({
    $typeName: "taskwire.kernel.v1.TaskStats",
    ...Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)),
  }) as TaskStats
);

const arbitraryEvent: fc.Arbitrary<ExitEvent> = fc.oneof(
  fc.record({
    seq: u64,
    cpu: u32,
    pid: u32,
    tgid: u32,
    pidStats: fc.option(arbitraryStats, { nil: undefined }),
    tgidStats: fc.option(arbitraryStats, { nil: undefined }),
  })
    .map(({ seq, cpu, ...exit }) => ({
      seq,
      cpu,
      event: { case: "exit" as const, value: { ...exit, $typeName: "taskwire.v1.Exit" as const } },
    })),
  fc.record({
    seq: u64,
    cpu: u32,
    count: u64,
    firstSeq: u64,
    lastSeq: u64,
    reason: fc.constantFrom(...Object.values(LossReason).filter((v) => typeof v === "number")),
    countUnknown: fc.boolean(),
  })
    .map(({ seq, cpu, ...lost }) => ({
      seq,
      cpu,
      event: { case: "lost" as const, value: { ...lost, $typeName: "taskwire.v1.Lost" as const } },
    })),
  fc.record({ seq: u64, cpu: u32 }).map((e) => ({ ...e, event: { case: undefined } })),
).map((e) => ({ $typeName: "taskwire.v1.ExitEvent", ...e }) as ExitEvent);

/** Any SubscribeExitsResponse: opening, batch or heartbeat fields, exits, losses. */
export const arbitraryResponse: fc.Arbitrary<SubscribeExitsResponse> = fc.record({
  events: fc.array(arbitraryEvent, { maxLength: 6 }),
  listenerId: fc.string({ maxLength: 40 }),
  cpumask: fc.string({ maxLength: 12 }),
  queued: u32,
  heartbeat: fc.boolean(),
}).map((r) => create(SubscribeExitsResponseSchema, r));
