/** Conversions between the service's internal shapes and the proto messages. */
import { create, fromBinary } from "@bufbuild/protobuf";
import {
  type ExitEvent,
  ExitEventSchema,
  ExitSchema,
  LossReason,
  OverflowPolicy as PbOverflowPolicy,
} from "../gen/taskwire/v1/taskstats_pb.ts";
import type { TaskStats } from "../gen/taskwire/kernel/v1/taskstats_pb.ts";
import type { LossKind, OverflowPolicy } from "../core/event-queue.ts";
import type { RetainedExit, StreamItem } from "../core/retention.ts";
import { type ExitRecord, timestampParts } from "../kernel/exit-record.ts";
import { InvalidRequestError } from "./errors.ts";

/** What the server's listeners queue and retain: exit records, and each exit's encoded Exit message. */
export type ServerItem = StreamItem<ExitRecord, Uint8Array>;

const REASONS: Record<LossKind, LossReason> = {
  "subscriber-overflow": LossReason.SUBSCRIBER_OVERFLOW,
  "memory-budget": LossReason.MEMORY_BUDGET,
  "kernel-overflow": LossReason.KERNEL_OVERFLOW,
  "source-error": LossReason.SOURCE_ERROR,
  retention: LossReason.RETENTION,
  restart: LossReason.RESTART,
};

/** A queue or retained item as a stream event, with the stream's field mask applied. */
export function toExitEvent(item: ServerItem, project?: (s: TaskStats) => TaskStats): ExitEvent {
  if (item.kind === "retained") return fromRetained(item, project);
  if (item.kind === "lost") {
    return create(ExitEventSchema, {
      seq: BigInt(item.last),
      cpu: Math.max(item.cpu, 0),
      event: {
        case: "lost",
        value: {
          count: BigInt(item.last - item.first + 1),
          firstSeq: BigInt(item.first),
          lastSeq: BigInt(item.last),
          reason: REASONS[item.reason],
        },
      },
    });
  }
  const r = item.record;
  const pidStats = project ? project(r.pidStats) : r.pidStats;
  const tgidStats = r.tgidStats && (project ? project(r.tgidStats) : r.tgidStats);
  return create(ExitEventSchema, {
    seq: BigInt(item.seq),
    cpu: r.cpu,
    event: {
      case: "exit",
      value: { pid: r.pid, tgid: r.tgid, pidStats, ...(tgidStats && { tgidStats }), receivedAt: receivedAt(r) },
    },
  });
}

function receivedAt(r: ExitRecord): { seconds: bigint; nanos: number } {
  const { seconds, nanos } = timestampParts(r.receivedAtMs);
  return { seconds: BigInt(seconds), nanos };
}

// A retained exit (JSON or masked replays only: binary streams send its bytes as they are).
function fromRetained(item: RetainedExit<Uint8Array>, project?: (s: TaskStats) => TaskStats): ExitEvent {
  const exit = fromBinary(ExitSchema, item.payload);
  if (project !== undefined) {
    if (exit.pidStats !== undefined) exit.pidStats = project(exit.pidStats);
    if (exit.tgidStats !== undefined) exit.tgidStats = project(exit.tgidStats);
  }
  return create(ExitEventSchema, { seq: BigInt(item.seq), cpu: item.cpu, event: { case: "exit", value: exit } });
}

/** The request's overflow policy (UNSPECIFIED is DROP_NEWEST, the kernel's behaviour). */
export function toPolicy(p: PbOverflowPolicy): OverflowPolicy {
  switch (p) {
    case PbOverflowPolicy.UNSPECIFIED:
    case PbOverflowPolicy.DROP_NEWEST:
      return "drop-newest";
    case PbOverflowPolicy.DROP_OLDEST:
      return "drop-oldest";
    default:
      throw new InvalidRequestError(`overflow policy ${p} is unknown; use DROP_NEWEST or DROP_OLDEST`);
  }
}
