/**
 * Request deadlines past what a timer holds, refused without arming one.
 * connect-es parses a request's timeout header (Connect's
 * `connect-timeout-ms`, gRPC's and gRPC-Web's `grpc-timeout`) and, when it is
 * over the router's `maxTimeoutMs`, answers INVALID_ARGUMENT; but it still
 * arms the deadline's setTimeout with the value asked for, and Node prints a
 * TimeoutOverflowWarning to stderr for each such request past 2^31 - 1 ms:
 * one line pair per request, from callers with no credentials too, and past
 * every log budget. This layer runs first: a header over the limit is
 * replaced by one connect-es cannot parse (rpc/errors.ts overLimitTimeout),
 * so connect-es answers INVALID_ARGUMENT with no deadline armed, and the
 * refusal's message is the one an over-limit timeout always gets.
 */
import type { UniversalHandler, UniversalServerRequest } from "@connectrpc/connect/protocol";
import { parseTimeout as parseConnectTimeout } from "@connectrpc/connect/protocol-connect";
import { parseTimeout as parseGrpcTimeout } from "@connectrpc/connect/protocol-grpc";
import { overLimitTimeout } from "../rpc/errors.ts";
import { handlerFacts } from "../rpc/universal.ts";

const HEADERS = [
  { name: "connect-timeout-ms", parse: parseConnectTimeout },
  { name: "grpc-timeout", parse: parseGrpcTimeout },
] as const;

/** Wraps each handler so a timeout header over `maxTimeoutMs` is refused without a timer armed for it. */
export function limitTimeouts(handlers: readonly UniversalHandler[], maxTimeoutMs: number): UniversalHandler[] {
  if (!Number.isInteger(maxTimeoutMs) || maxTimeoutMs < 1) {
    throw new RangeError(`maxTimeoutMs must be a whole number of ms >= 1, got ${maxTimeoutMs}`);
  }
  return handlers.map((handler) => {
    const limited = (req: UniversalServerRequest) => handler(defuse(req, maxTimeoutMs));
    return Object.assign(limited, handlerFacts(handler));
  });
}

function defuse(req: UniversalServerRequest, maxTimeoutMs: number): UniversalServerRequest {
  for (const { name, parse } of HEADERS) {
    const value = req.header.get(name);
    if (value === null) continue;
    const { timeoutMs, error } = parse(value, maxTimeoutMs);
    // Over the limit (parsed, with an error): not a format connect-es parses, so it errs with no timeoutMs.
    if (error !== undefined && timeoutMs !== undefined) {
      req.header.set(name, overLimitTimeout(timeoutMs, maxTimeoutMs));
    }
  }
  return req;
}
