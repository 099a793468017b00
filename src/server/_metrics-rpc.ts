/**
 * RPC series from a Connect router interceptor: calls finished by method,
 * code and the caller's role; unary latency; stream durations. Every label
 * value comes from a closed set: the method from the router's own methods
 * (a path no method serves is answered before any interceptor runs), the
 * code from Connect's 17, the role from the five roles plus two states.
 * Principal names and listener ids are never labels: a client cannot add a
 * series by choosing either.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { Counter, Histogram, type Registry } from "prom-client";
import { CALL_AUTH, type CallAuth } from "../rpc/principal.ts";
import { tapped } from "../rpc/tapped.ts";

/** Unary handling time buckets, seconds: sub-millisecond lookups to a slow source. */
const UNARY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** Stream lifetime buckets, seconds: reconnect churn to day-long subscriptions. */
const STREAM_BUCKETS = [0.1, 1, 10, 60, 300, 900, 3600, 14_400, 86_400];

// Highest first: a principal is counted under the most powerful role it holds.
const ROLE_ORDER = ["admin", "subscribe", "read", "metrics"] as const;

/**
 * The one label a caller's roles become. Roles are a set, and labelling
 * each would multiply series; the highest held (admin > subscribe > read >
 * metrics) says which kind of client called, with "anonymous" when
 * authentication is off, "unauthenticated" when it failed and "none" for a
 * principal holding no role: seven values at most.
 */
export function roleLabel(auth: CallAuth): string {
  const who = auth.principal;
  if (who === undefined) return "unauthenticated";
  if (who.via === "none") return "anonymous";
  return ROLE_ORDER.find((r) => who.roles.has(r)) ?? "none";
}

/** Connect's name for the code a call ended with ("ok" for none). */
export function codeLabel(err: unknown): string {
  if (err === undefined) return "ok";
  return codeToString(err instanceof ConnectError ? err.code : ConnectError.from(err, Code.Unknown).code);
}

/** Makes the RPC series in `registry` and the interceptor that counts into them. */
export function createRpcMetrics(registry: Registry): Interceptor {
  const registers = [registry];
  const requests = new Counter({
    name: "taskwire_rpc_requests_total",
    help: "RPCs finished (unary: answered; streams: ended), by method, code and the caller's highest role.",
    labelNames: ["method", "code", "role"] as const,
    registers,
  });
  const unary = new Histogram({
    name: "taskwire_rpc_duration_seconds",
    help: "Time from a unary RPC reaching its handler to its response, by method and code.",
    labelNames: ["method", "code"] as const,
    buckets: UNARY_BUCKETS,
    registers,
  });
  const streams = new Histogram({
    name: "taskwire_rpc_stream_duration_seconds",
    help: "How long server streams lasted, by method and the code they ended with (canceled: the client left).",
    labelNames: ["method", "code"] as const,
    buckets: STREAM_BUCKETS,
    registers,
  });
  return (next) => async (req) => {
    const method = req.method.name, role = roleLabel(req.contextValues.get(CALL_AUTH)), t0 = performance.now();
    const done = (err: unknown) => {
      // A stream whose client left ends without an error: its handler's signal says why it ended.
      const code = err === undefined && req.signal.aborted ? abortLabel(req.signal.reason) : codeLabel(err);
      const seconds = (performance.now() - t0) / 1000;
      requests.inc({ method, code, role });
      (req.method.methodKind === "unary" ? unary : streams).observe({ method, code }, seconds);
    };
    let res;
    try {
      res = await next(req);
    } catch (err) {
      done(err);
      throw err;
    }
    if (!res.stream) {
      done(undefined);
      return res;
    }
    // Reported once: at its end, its error, or the consumer returning early (the client went away).
    return { ...res, message: tapped(res.message, { end: (_how, err) => done(err) }) };
  };
}

// Why a call's signal was aborted: a deadline or shutdown says so with a ConnectError; anything else is the client leaving.
function abortLabel(reason: unknown): string {
  return reason instanceof ConnectError ? codeToString(reason.code) : "canceled";
}
