/** Conversions between the service's internal shapes and the proto messages. */
import { create } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import {
  ExitEventSchema, LossReason, OverflowPolicy as PbOverflowPolicy, type Exit, type ExitEvent,
} from "../gen/taskwire/v1/taskstats_pb.ts";
import { lengthDelimited } from "./_fast-encode.ts";
import type { TaskStats } from "../gen/taskwire/kernel/v1/taskstats_pb.ts";
import type { LossKind, OverflowPolicy, QueueItem } from "./event-queue.ts";
import { InvalidRequestError } from "./errors.ts";

const REASONS: Record<LossKind, LossReason> = {
  "subscriber-overflow": LossReason.SUBSCRIBER_OVERFLOW,
  "kernel-overflow": LossReason.KERNEL_OVERFLOW,
  retention: LossReason.RETENTION,
  restart: LossReason.RESTART,
};

// Exit's fields pid_stats (3) and tgid_stats (4) as pre-encoded unknown fields:
// protobuf-es writes unknown fields verbatim, so a binary client receives
// exactly the bytes toBinary() would have produced for the full messages.
function preEncodedExit(r: QueueItem & { kind: "exit" }): ExitEvent {
  const { record } = r;
  const unknown = [{ no: 3, wireType: WireType.LengthDelimited, data: lengthDelimited(record.pidStats) }];
  if (record.tgidStats) unknown.push({ no: 4, wireType: WireType.LengthDelimited, data: lengthDelimited(record.tgidStats) });
  const exit: Exit = { $typeName: "taskwire.v1.Exit", pid: record.pid, tgid: record.tgid, $unknown: unknown };
  return { $typeName: "taskwire.v1.ExitEvent", seq: BigInt(r.seq), cpu: record.cpu, event: { case: "exit", value: exit } };
}

/** How a stream encodes events. */
export interface EventShape {
  /** Field mask for TaskStats. */
  readonly project?: ((s: TaskStats) => TaskStats) | undefined;
  /** The client reads protobuf binary (pre-encoded stats can be used). */
  readonly binary?: boolean;
}

/** A queue item as a stream event, shaped for its stream. */
export function toStreamEvent(item: QueueItem, shape: EventShape): ExitEvent {
  if (item.kind === "exit" && shape.binary && shape.project === undefined) return preEncodedExit(item);
  return toExitEvent(item, shape.project);
}

/** A queue item as a stream event, with the stream's field mask applied. */
export function toExitEvent(item: QueueItem, project?: (s: TaskStats) => TaskStats): ExitEvent {
  if (item.kind === "lost") {
    return create(ExitEventSchema, {
      seq: BigInt(item.last),
      cpu: Math.max(item.cpu, 0),
      event: {
        case: "lost",
        value: { count: BigInt(item.last - item.first + 1), firstSeq: BigInt(item.first), lastSeq: BigInt(item.last), reason: REASONS[item.reason] },
      },
    });
  }
  const r = item.record;
  const pidStats = project ? project(r.pidStats) : r.pidStats;
  const tgidStats = r.tgidStats && (project ? project(r.tgidStats) : r.tgidStats);
  return create(ExitEventSchema, {
    seq: BigInt(item.seq),
    cpu: r.cpu,
    event: { case: "exit", value: { pid: r.pid, tgid: r.tgid, pidStats, ...(tgidStats && { tgidStats }) } },
  });
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
