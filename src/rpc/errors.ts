/**
 * The RPC boundary's one error mapping: domain errors become ConnectErrors
 * with the right code and an ErrorDetail naming the reason (and the values
 * the failure is about), so clients act on a reason instead of parsing a
 * message; anything unexpected becomes INTERNAL without leaking a stack.
 * Every error taskwire returns carries one ErrorDetail: connect-es's own
 * (a body that does not decode, a protocol error) get one in withDetail(),
 * which error-responses.ts applies where connect-es raises them. Messages
 * and metadata stay small whatever the request held (see core/errors.ts clip).
 */
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { ErrorDetailSchema, ErrorReason } from "../gen/taskwire/v1/taskstats_pb.ts";
import { CpulistError } from "../kernel/cpulist.ts";
import {
  CgroupNotFoundError,
  CgroupPathError,
  CgroupTooLargeError,
  SourcePermissionError,
  SourceUnavailableError,
  SourceUnsupportedError,
  TaskNotFoundError,
} from "../sources/source.ts";
import { RoleRequiredError, UnauthenticatedError } from "../auth/errors.ts";
import {
  clip,
  LimitExceededError,
  ListenerNotFoundError,
  SeqOutOfRangeError,
  ShuttingDownError,
  StreamStalledError,
  StreamTakenOverError,
} from "../core/errors.ts";
import { logUnexpected } from "../log/error-log.ts";

/** A request field is missing, malformed or out of range. */
export class InvalidRequestError extends Error {
  override readonly name = "InvalidRequestError";
}

/** A uid-limited principal asked for something that would show it tasks of other uids. */
export class UidLimitedError extends Error {
  override readonly name = "UidLimitedError";
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
  map(ListenerNotFoundError, Code.NotFound, ErrorReason.LISTENER_NOT_FOUND, (e) => ({
    listener_id: e.listenerId,
    ...(e.removed !== undefined && { removed: e.removed }),
  })),
  map(LimitExceededError, Code.ResourceExhausted, ErrorReason.LIMIT_EXCEEDED, (e) => ({
    ...(e.retryAfterMs !== undefined && { retry_after_ms: String(Math.ceil(e.retryAfterMs)) }),
  })),
  map(SourcePermissionError, Code.PermissionDenied, ErrorReason.PERMISSION_DENIED),
  map(SourceUnavailableError, Code.Unavailable, ErrorReason.SOURCE_UNAVAILABLE),
  map(SeqOutOfRangeError, Code.OutOfRange, ErrorReason.SEQ_OUT_OF_RANGE),
  map(UnauthenticatedError, Code.Unauthenticated, ErrorReason.UNAUTHENTICATED),
  map(RoleRequiredError, Code.PermissionDenied, ErrorReason.ROLE_REQUIRED, (e) => ({ role: e.role })),
  map(StreamTakenOverError, Code.Aborted, ErrorReason.STREAM_TAKEN_OVER),
  map(StreamStalledError, Code.ResourceExhausted, ErrorReason.LIMIT_EXCEEDED),
  map(ShuttingDownError, Code.Unavailable, ErrorReason.SHUTTING_DOWN),
  map(CgroupPathError, Code.InvalidArgument, ErrorReason.INVALID_REQUEST),
  map(CgroupNotFoundError, Code.NotFound, ErrorReason.UNSPECIFIED),
  map(CgroupTooLargeError, Code.ResourceExhausted, ErrorReason.LIMIT_EXCEEDED, (e) => ({ limit: String(e.limit) })),
  map(SourceUnsupportedError, Code.FailedPrecondition, ErrorReason.UNSUPPORTED),
  // No reason names a uid scope: ROLE_REQUIRED is the proto's for "may not see the task asked for";
  // "limited_to" tells it from a missing role (which carries "role").
  map(UidLimitedError, Code.PermissionDenied, ErrorReason.ROLE_REQUIRED, () => ({ limited_to: "uids" })),
];

/** Longest message an error carries; the values it echoes are clipped already, this bounds the rest. */
export const MESSAGE_MAX = 1024;

/** Longest ErrorDetail metadata value. */
const METADATA_MAX = 128;

/** Maps any thrown value to a ConnectError carrying one ErrorDetail. */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return withDetail(err);
  const m = MAPPINGS.find((m) => err instanceof m.type);
  if (m !== undefined) {
    const e = err as Error;
    return detailed(e.message, m.code, m.reason, m.metadata?.(e) ?? {}, e);
  }
  // The client left while its request was being read (Node's stream adapters raise AbortError,
  // "Premature close"): no one is there to answer, and nothing went wrong in the server.
  if (err instanceof Error && err.name === "AbortError") {
    return detailed("the client closed the request", Code.Canceled, ErrorReason.UNSPECIFIED, {}, err);
  }
  logUnexpected("unexpected error in a handler", err);
  return detailed("internal error; the server log has details", Code.Internal, ErrorReason.UNSPECIFIED, {}, err);
}

function detailed(
  message: string,
  code: Code,
  reason: ErrorReason,
  metadata: Record<string, string>,
  cause: unknown,
): ConnectError {
  const values = Object.fromEntries(Object.entries(metadata).map(([k, v]) => [k, clip(v, METADATA_MAX)]));
  const detail = { desc: ErrorDetailSchema, value: { reason, metadata: values } };
  return new ConnectError(clip(message, MESSAGE_MAX), code, undefined, [detail], cause);
}

/** Whether `err` carries taskwire's ErrorDetail (as built here, or as received). */
export function hasDetail(err: ConnectError): boolean {
  return err.details.some((d) => ("desc" in d ? d.desc.typeName : d.type) === ErrorDetailSchema.typeName);
}

// connect-es reports some faults of a request as INTERNAL: a body that is
// not valid protobuf ("parse binary: ..."), an envelope flagged compressed
// without a compression named for the call, and a compressed body zlib
// cannot inflate (other than corrupt data, e.g. cut short: connect-node's
// "decompression failed"). It is the request that is wrong.
const REQUEST_FAULT =
  /^(?:parse binary: |received compressed envelope, but do not know how to decompress|decompression failed$)/;

/**
 * `err` with taskwire's ErrorDetail: itself when it has one; otherwise (an
 * error connect-es raised: a body that does not decode, a message over
 * readMaxBytes, a protocol error) the same code, message clipped, with the
 * reason its code implies (INVALID_REQUEST for a malformed request).
 */
export function withDetail(err: ConnectError): ConnectError {
  if (hasDetail(err)) return err;
  const code = err.code === Code.Internal && REQUEST_FAULT.test(err.rawMessage) ? Code.InvalidArgument : err.code;
  const out = detailed(explained(err.rawMessage), code, reasonOf(code), {}, err.cause ?? err);
  err.metadata.forEach((value, key) => out.metadata.append(key, value));
  return out;
}

// connect-es's refusal of a request timeout past the router's maxTimeoutMs, saying what to do; and its refusal of
// the header server/timeout-limit.ts puts in place of such a timeout (overLimitTimeout).
const TIMEOUT_TOO_LONG = [
  /^timeout (\d+)ms must be <= (\d+)$/,
  /^protocol error: invalid (?:connect|grpc) timeout value: (\d+) ms, over the limit of (\d+) ms$/,
];

/**
 * What a timeout header over the limit is replaced with: a value connect-es cannot parse (so it arms no timer), from
 * which the refusal's message is rebuilt.
 */
export function overLimitTimeout(timeoutMs: number, maxTimeoutMs: number): string {
  return `${timeoutMs} ms, over the limit of ${maxTimeoutMs} ms`;
}

// connect-es's refusals of a compressed request and of a message past readMaxBytes, which name neither taskwire's
// flags nor what to send instead.
const UNKNOWN_COMPRESSION = /^unknown compression "([^"]*)": supported encodings are (.*)$/;
const TOO_LARGE =
  /^message (?:size (?:(\d+) )?)?is larger than configured readMaxBytes (\d+)(?: after decompression)?$/;

// connect-es's message when a call's deadline passes.
const TIMED_OUT = "the operation timed out";

function explained(message: string): string {
  if (message === TIMED_OUT) return "the call's deadline passed: send a longer timeout, or none";
  const long = TIMEOUT_TOO_LONG.map((re) => re.exec(message)).find((m) => m !== null);
  if (long !== undefined) {
    return `the request's timeout (${long[1]} ms) is longer than this server can time (at most ${long[2]} ms, ` +
      "about 24.8 days): send a shorter timeout, or none";
  }
  const compression = UNKNOWN_COMPRESSION.exec(message);
  if (compression !== null) {
    return compression[2] === ""
      ? `request compression "${compression[1]}" is not accepted: this server takes uncompressed requests ` +
        "(its operator can offer gzip and br with serve --compress); send the request uncompressed"
      : `request compression "${compression[1]}" is not accepted: send it uncompressed or as one of ${compression[2]}`;
  }
  const large = TOO_LARGE.exec(message);
  if (large === null) return message;
  return `a request message of ${large[1] === undefined ? "more than " + large[2] : large[1]} bytes` +
    ` (after any decompression) is larger than this server takes, ${
      large[2]
    } bytes (serve --max-message-bytes); send a smaller one`;
}

function reasonOf(code: Code): ErrorReason {
  switch (code) {
    case Code.InvalidArgument:
    case Code.Unimplemented: // a protocol error: no message, two messages, an unknown compression
    case Code.OutOfRange:
    case Code.FailedPrecondition:
      return ErrorReason.INVALID_REQUEST;
    case Code.ResourceExhausted:
      return ErrorReason.LIMIT_EXCEEDED;
    case Code.Unauthenticated:
      return ErrorReason.UNAUTHENTICATED;
    default:
      return ErrorReason.UNSPECIFIED;
  }
}

/**
 * A call whose request set a timeout (connect-timeout-ms, grpc-timeout) ends
 * with DEADLINE_EXCEEDED once it is up: connect-es aborts the call's signal
 * with that error, and a stream that just stopped would end OK. Checked
 * before a call changes anything, too: connect-es's timer fires a turn
 * later, so a timeout of 0 would otherwise still register a listener that
 * no client will ever hear of.
 */
export function throwIfPastDeadline(ctx: Pick<HandlerContext, "signal" | "timeoutMs">): void {
  const late = pastDeadline(ctx);
  if (late !== undefined) throw late;
}

/**
 * The call's deadline error once its timeout is up (before connect-es's timer has fired, too), with its ErrorDetail
 * (a stream's end-of-stream error passes no interceptor that would add it); else undefined.
 */
export function pastDeadline(ctx: Pick<HandlerContext, "signal" | "timeoutMs">): ConnectError | undefined {
  const why: unknown = ctx.signal.reason;
  if (ctx.signal.aborted && why instanceof ConnectError && why.code === Code.DeadlineExceeded) return withDetail(why);
  const left = ctx.timeoutMs();
  return left !== undefined && left <= 0 ? withDetail(new ConnectError(TIMED_OUT, Code.DeadlineExceeded)) : undefined;
}
