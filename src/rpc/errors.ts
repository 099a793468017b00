/**
 * The RPC boundary's one error mapping: domain errors become ConnectErrors
 * with the right code and an ErrorDetail naming the reason (and the values
 * the failure is about), so clients act on a reason instead of parsing a
 * message; anything unexpected becomes INTERNAL without leaking a stack.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, ErrorReason } from "../gen/taskwire/v1/taskstats_pb.ts";
import { CpulistError } from "../kernel/cpulist.ts";
import { SourcePermissionError, SourceUnavailableError, TaskNotFoundError } from "../sources/source.ts";
import {
  LimitExceededError,
  ListenerNotFoundError,
  SeqOutOfRangeError,
  ShuttingDownError,
  StreamTakenOverError,
} from "../core/errors.ts";

/** A request field is missing, malformed or out of range. */
export class InvalidRequestError extends Error {
  override readonly name = "InvalidRequestError";
}

type ErrorClass<E extends Error> = new (...args: never[]) => E;

interface Mapping<E extends Error = Error> {
  type: ErrorClass<E>;
  code: Code;
  reason: ErrorReason;
  metadata?: (err: E) => Record<string, string>;
}

function map<E extends Error>(
  type: ErrorClass<E>,
  code: Code,
  reason: ErrorReason,
  metadata?: (err: E) => Record<string, string>,
): Mapping {
  return { type, code, reason, ...(metadata && { metadata: metadata as (err: Error) => Record<string, string> }) };
}

const MAPPINGS: Mapping[] = [
  map(CpulistError, Code.InvalidArgument, ErrorReason.INVALID_CPUMASK, (e) => ({ errno: e.errno })),
  map(InvalidRequestError, Code.InvalidArgument, ErrorReason.INVALID_REQUEST),
  map(TaskNotFoundError, Code.NotFound, ErrorReason.TASK_NOT_FOUND, (e) => ({ [e.kind]: String(e.id) })),
  map(ListenerNotFoundError, Code.NotFound, ErrorReason.LISTENER_NOT_FOUND, (e) => ({ listener_id: e.listenerId })),
  map(LimitExceededError, Code.ResourceExhausted, ErrorReason.LIMIT_EXCEEDED),
  map(SourcePermissionError, Code.PermissionDenied, ErrorReason.PERMISSION_DENIED),
  map(SourceUnavailableError, Code.Unavailable, ErrorReason.SOURCE_UNAVAILABLE),
  map(SeqOutOfRangeError, Code.OutOfRange, ErrorReason.SEQ_OUT_OF_RANGE),
  map(StreamTakenOverError, Code.Aborted, ErrorReason.STREAM_TAKEN_OVER),
  map(ShuttingDownError, Code.Unavailable, ErrorReason.SHUTTING_DOWN),
];

/** Maps any thrown value to a ConnectError carrying one ErrorDetail. */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const m = MAPPINGS.find((m) => err instanceof m.type);
  if (m !== undefined) {
    const e = err as Error;
    const detail = { desc: ErrorDetailSchema, value: { reason: m.reason, metadata: m.metadata?.(e) ?? {} } };
    return new ConnectError(e.message, m.code, undefined, [detail], e);
  }
  console.error("taskwire: unexpected error in a handler:", err);
  return new ConnectError("internal error; the server log has details", Code.Internal, undefined, undefined, err);
}
