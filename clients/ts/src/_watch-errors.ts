/**
 * How watchExits judges an error: worth another attempt (a broken
 * connection, a server going away), the caller's own (never retried), or the
 * listener gone, and whether it was deregistered rather than lost.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorReason, ListenerNotFoundError, TaskwireError } from "./errors.ts";

const RETRYABLE = new Set([Code.Unavailable, Code.Unknown, Code.Internal, Code.DeadlineExceeded, Code.Canceled]);
const NETWORK = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ERR_STREAM_PREMATURE_CLOSE",
]);

// A connection that broke is worth another try whatever code the transport
// gave it (connect-node reports a reset as ABORTED); a takeover's ABORTED is not.
export function retryable(err: ConnectError): boolean {
  const cause = (err.cause as { code?: unknown } | undefined)?.code;
  return RETRYABLE.has(err.code) || (typeof cause === "string" && NETWORK.has(cause));
}

// connect-es reports a request it could not encode as INTERNAL "serialize ...": the same request fails the same way
// on every attempt, so it is never retried (watchExits also checks its requests up front: watch.ts _checkRequests).
export function clientSide(err: ConnectError): boolean {
  return err.code === Code.Internal && /^serialize /.test(err.rawMessage);
}

// NOT_FOUND without taskwire's detail (a client not built by this SDK) can only be the listener here.
export function listenerGone(err: ConnectError): boolean {
  return err instanceof ListenerNotFoundError || (err.code === Code.NotFound && !(err instanceof TaskwireError));
}

// The listener was removed while this stream read it (deregistered by its owner from elsewhere, or an admin): the
// server says so (values.removed), or, without that, its NOT_FOUND came after the stream had opened.
export function deregistered(err: ConnectError, opened: boolean): boolean {
  return opened || (err instanceof ListenerNotFoundError && err.removed !== undefined);
}

// A server that ends a listener's stream without an error (older than this SDK) ended it for the same reason.
export function endedWithoutError(listenerId: string): ListenerNotFoundError {
  const why = "the server ended its stream: the listener was deregistered";
  return new ListenerNotFoundError(
    new ConnectError(`listener ${listenerId}: ${why}`, Code.NotFound),
    ErrorReason.LISTENER_NOT_FOUND,
    { listener_id: listenerId, removed: why },
  );
}
