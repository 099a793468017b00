/**
 * The RPC boundary's one error mapping: domain errors become ConnectErrors
 * with the right code; anything unexpected becomes INTERNAL without leaking
 * a stack.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { CpulistError } from "../kernel/cpulist.ts";
import { SourcePermissionError, SourceUnavailableError, TaskNotFoundError } from "../sources/source.ts";
import { LimitExceededError, ListenerNotFoundError } from "./registry.ts";

/** A request field is missing or out of range. */
export class InvalidRequestError extends Error {
  override readonly name = "InvalidRequestError";
}

/** A position the request names does not exist (e.g. a resume seq never sent). */
export class OutOfRangeError extends Error {
  override readonly name = "OutOfRangeError";
}

/** The source cannot do what was asked (e.g. lacks a feature). */
export class UnsupportedError extends Error {
  override readonly name = "UnsupportedError";
}

const CODES: [new (...args: never[]) => Error, Code][] = [
  [CpulistError, Code.InvalidArgument],
  [InvalidRequestError, Code.InvalidArgument],
  [TaskNotFoundError, Code.NotFound],
  [ListenerNotFoundError, Code.NotFound],
  [LimitExceededError, Code.ResourceExhausted],
  [SourcePermissionError, Code.PermissionDenied],
  [SourceUnavailableError, Code.Unavailable],
  [UnsupportedError, Code.FailedPrecondition],
  [OutOfRangeError, Code.OutOfRange],
];

/** Maps any thrown value to a ConnectError. */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  for (const [type, code] of CODES) if (err instanceof type) return new ConnectError(err.message, code, undefined, undefined, err);
  console.error("taskwire: unexpected error in a handler:", err);
  return new ConnectError("internal error; the server log has details", Code.Internal, undefined, undefined, err);
}
