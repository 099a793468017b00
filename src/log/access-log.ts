/**
 * The access log: one info record per RPC (category ["taskwire", "access"])
 * when its response is done, a stream's when it ends; never one per event.
 *
 * Two pieces, since neither sees everything: a handler wrapper (outermost,
 * around the router's universal handlers, so Connect, gRPC-Web and gRPC on
 * every runtime pass it) counts the request and response bytes as they cross
 * the wire (after compression and framing, what the network carried) and
 * writes the record once the response body has been handed to the
 * transport; a router interceptor records the call's code as it leaves the
 * handler, and a stream's end. A stream's events and losses come from the
 * stream itself (rpc/stream-report.ts). A call connect-es refuses before any
 * interceptor (a unary body it cannot decode) gets its code from the
 * response: the HTTP status (Connect) or grpc-status (gRPC); "unknown" where
 * the status is inside the body (gRPC-Web, Connect streams).
 *
 * A hostile client must not flood the log: admitted unary calls are limited
 * per principal (admission), and here every line counts against
 * `linesPerSecond`, failed calls (refusals, undecodable requests: nothing
 * limited them before) against a tenth of it; the rest are counted into one
 * warning per second. Values a client chose (principal names from
 * certificates, addresses) are clipped.
 */
import {
  type Code,
  ConnectError,
  type ContextValues,
  createContextKey,
  createContextValues,
  type Interceptor,
} from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { codeFromHttpStatus, codeFromString, codeToString } from "@connectrpc/connect/protocol-connect";
import type { Logger } from "@logtape/logtape";
import { clip } from "../core/errors.ts";
import { CALL_AUTH } from "../rpc/principal.ts";
import { newStreamReport, STREAM_REPORT, type StreamReport } from "../rpc/stream-report.ts";
import { type TapEnd, tapped } from "../rpc/tapped.ts";
import { mappedSink, TRANSPORT_SINK } from "../rpc/stream-sink.ts";
import { type Fields, logText } from "./logger.ts";
import { createLineBudget } from "./line-budget.ts";
import { handlerFacts } from "../rpc/universal.ts";

/** Default most access lines per second (failed calls: a tenth of it). */
export const DEFAULT_ACCESS_LOG_RATE = 1000;

/** Options of createAccessLog. */
export interface AccessLogOptions {
  /** taskwire's logger; records go to its "access" child. */
  readonly logger: Logger;
  /** Most lines per second; failed calls get a tenth of it (default DEFAULT_ACCESS_LOG_RATE). */
  readonly linesPerSecond?: number;
  /** Milliseconds, monotonic (default performance.now). */
  readonly now?: () => number;
}

/** The access log's two pieces. */
export interface AccessLog {
  /** Router interceptor: the call's code and its stream's end. Put it before errorDetailInterceptor (outside it). */
  readonly interceptor: Interceptor;
  /** Wraps the router's handlers (outermost): bytes on the wire, and the record once the response is done. */
  wrap(handlers: readonly UniversalHandler[]): UniversalHandler[];
}

// One call in flight.
interface Call {
  readonly start: number;
  requestBytes: number | undefined;
  responseBytes: number;
  code: string | undefined;
  readonly stream: StreamReport | undefined;
  done: boolean;
  /** A Connect unary error body, kept (up to MAX_ERROR_BYTES) to read its code from: its HTTP status is ambiguous. */
  errorBody?: Uint8Array[];
}

const MAX_ERROR_BYTES = 64 * 1024;

const ACCESS_CALL = createContextKey<Call | undefined>(undefined, { description: "taskwire access log call" });

/** Creates the access log. */
export function createAccessLog(o: AccessLogOptions): AccessLog {
  const logger = o.logger.getChild("access");
  const rate = o.linesPerSecond ?? DEFAULT_ACCESS_LOG_RATE;
  if (!Number.isInteger(rate) || rate < 1) {
    throw new RangeError(`linesPerSecond must be a whole number >= 1, got ${rate}`);
  }
  const now = o.now ?? (() => performance.now());
  const budgets = {
    all: createLineBudget(
      rate,
      (n) => logText(logger, "warning", `${n} calls not logged in the last second (--access-log-rate ${rate})`),
    ),
    failed: createLineBudget(
      Math.max(1, Math.floor(rate / 10)),
      (n) =>
        logText(
          logger,
          "warning",
          `${n} failed calls not logged in the last second (--access-log-rate ${rate}, a tenth of it for failures)`,
        ),
    ),
  };
  const write = (failed: boolean, message: string, fields: Fields): void => {
    if (!logger.isEnabledFor("info")) return;
    if (failed && !budgets.failed.take()) return;
    if (budgets.all.take()) logText(logger, "info", message, fields);
  };
  return {
    interceptor: accessInterceptor,
    wrap: (handlers) => handlers.map((h) => wrapHandler(h, { now, write })),
  };
}

interface Writer {
  readonly now: () => number;
  readonly write: (failed: boolean, message: string, fields: Fields) => void;
}

const accessInterceptor: Interceptor = (next) => async (req) => {
  const call = req.contextValues.get(ACCESS_CALL);
  if (call === undefined) return next(req);
  try {
    const res = await next(req);
    if (!res.stream) {
      call.code = "ok";
      return res;
    }
    return { ...res, message: tapped(res.message, { end: (how, err) => noteEnd(call, req.signal, how, err) }) };
  } catch (err) {
    call.code = codeName(ConnectError.from(err).code);
    throw err;
  }
};

// How a stream's messages ended: ok, its error's code, or canceled (the client went away, or the transport stopped reading).
function noteEnd(call: Call, signal: AbortSignal, how: TapEnd, err: unknown): void {
  if (how === "failed") call.code = codeName(ConnectError.from(err).code);
  else if (how === "done") call.code = signal.aborted ? "canceled" : "ok";
  else call.code ??= "canceled";
}

function wrapHandler(handler: UniversalHandler, w: Writer): UniversalHandler {
  const streaming = handler.method.methodKind === "server_streaming" || handler.method.methodKind === "bidi_streaming";
  const logged = async (req: UniversalServerRequest): Promise<UniversalServerResponse> => {
    const call: Call = {
      start: w.now(),
      requestBytes: undefined,
      responseBytes: 0,
      code: undefined,
      stream: streaming ? newStreamReport() : undefined,
      done: false,
    };
    const values = (req.contextValues ?? createContextValues()).set(ACCESS_CALL, call);
    if (call.stream !== undefined) values.set(STREAM_REPORT, call.stream);
    // A stream's messages may go to the transport's sink, past the body counted below (rpc/stream-sink.ts).
    const sink = values.get(TRANSPORT_SINK);
    if (sink !== undefined) {
      values.set(
        TRANSPORT_SINK,
        mappedSink(sink, (c: Uint8Array) => (call.responseBytes += c.byteLength, c)),
      );
    }
    const finish = (res?: UniversalServerResponse): void => {
      if (call.done) return;
      call.done = true;
      // A stream dropped as stalled ends as its transport saw it (canceled); its log line says why it was dropped.
      if (call.stream?.stalled === true) call.code = "resource_exhausted";
      req.signal.removeEventListener("abort", onAbort);
      w.write(...describe(handler, req, values, call, res, w.now()));
    };
    // Once the handler has answered, the transport may never pull the body again: the abort is the end. While
    // it still runs (a unary call working after its client left), the end is when it stops, written then.
    let handling = true;
    const onAbort = (): void => {
      if (!handling) finish();
    };
    req.signal.addEventListener("abort", onAbort, { once: true });
    let res: UniversalServerResponse;
    try {
      res = await handler({ ...req, body: countRequest(req.body, call), contextValues: values });
    } catch (err) {
      call.code ??= codeName(ConnectError.from(err).code);
      finish();
      throw err;
    } finally {
      handling = false;
    }
    if (req.signal.aborted) finish(res);
    return countResponse(res, call, finish);
  };
  return Object.assign(logged, handlerFacts(handler));
}

function countRequest(body: UniversalServerRequest["body"], call: Call): UniversalServerRequest["body"] {
  // A JSON value some framework parsed already has no wire size here; the record leaves it out.
  if (body === null || typeof body !== "object" || !(Symbol.asyncIterator in body)) return body;
  call.requestBytes = 0;
  return (async function* () {
    for await (const chunk of body as AsyncIterable<Uint8Array>) {
      call.requestBytes! += chunk.byteLength;
      yield chunk;
    }
  })();
}

function countResponse(
  res: UniversalServerResponse,
  call: Call,
  finish: (res: UniversalServerResponse) => void,
): UniversalServerResponse {
  const keep = call.code === undefined && isConnectUnaryError(res);
  if (keep) call.errorBody = [];
  if (res.body === undefined || res.body instanceof Uint8Array) {
    call.responseBytes = res.body?.byteLength ?? 0;
    if (keep && res.body !== undefined) call.errorBody!.push(res.body);
    finish(res);
    return res;
  }
  const each = (chunk: Uint8Array): void => {
    call.responseBytes += chunk.byteLength;
    if (keep && call.responseBytes <= MAX_ERROR_BYTES) call.errorBody!.push(chunk);
  };
  return { ...res, body: tapped(res.body, { each, end: () => finish(res) }) };
}

function describe(
  handler: UniversalHandler,
  req: UniversalServerRequest,
  values: ContextValues,
  call: Call,
  res: UniversalServerResponse | undefined,
  end: number,
): [failed: boolean, message: string, fields: Fields] {
  const auth = values.get(CALL_AUTH);
  const code = call.code ?? codeOfResponse(res, call.errorBody) ?? (req.signal.aborted ? "canceled" : "unknown");
  const fields: Record<string, unknown> = {
    method: handler.method.name,
    protocol: protocolOf(req.header.get("content-type")),
    principal: auth.principal === undefined ? "-" : clip(auth.principal.id),
    peer: clip(auth.address || "-"),
    code,
    durationMs: Math.round((end - call.start) * 1000) / 1000,
    ...(call.requestBytes !== undefined && { requestBytes: call.requestBytes }),
    responseBytes: call.responseBytes,
  };
  const s = call.stream;
  if (s === undefined) return [code !== "ok", "rpc", fields];
  const lost = Object.values(s.lost).reduce((a, b) => a + b, 0);
  Object.assign(fields, { listenerId: s.listenerId || "-", events: s.events, lost });
  if (lost > 0) fields["lostByReason"] = { ...s.lost };
  // A stream that got its listener was admitted (its count is limited); anything else that failed was not.
  return [code !== "ok" && s.listenerId === "", "stream", fields];
}

// The code of a response that never reached the interceptor: gRPC's status (header or trailer), or a Connect
// unary error's body (its HTTP status says less: 400 is both invalid_argument and out_of_range).
function codeOfResponse(
  res: UniversalServerResponse | undefined,
  errorBody: Uint8Array[] | undefined,
): string | undefined {
  if (res === undefined) return undefined;
  const status = res.trailer?.get("grpc-status") ?? res.header?.get("grpc-status");
  if (status !== null && status !== undefined) return codeName(Number(status) as Code);
  if (!/^application\/(json|proto)/i.test(res.header?.get("content-type") ?? "")) return undefined;
  if (res.status === 200) return "ok";
  return connectErrorCode(errorBody) ?? codeName(codeFromHttpStatus(res.status));
}

function isConnectUnaryError(res: UniversalServerResponse): boolean {
  return res.status !== 200 && /^application\/json/i.test(res.header?.get("content-type") ?? "") &&
    res.header?.get("content-encoding") === null;
}

function connectErrorCode(chunks: Uint8Array[] | undefined): string | undefined {
  if (chunks === undefined || chunks.length === 0) return undefined;
  try {
    const decoder = new TextDecoder();
    const text = chunks.map((c, i) => decoder.decode(c, { stream: i < chunks.length - 1 })).join("");
    const code = (JSON.parse(text) as { code?: unknown }).code;
    return typeof code === "string" && codeFromString(code) !== undefined ? code : undefined;
  } catch {
    return undefined;
  }
}

function codeName(code: Code): string {
  return (code as number) === 0 ? "ok" : codeToString(code);
}

function protocolOf(contentType: string | null): string {
  if (/^application\/grpc-web/i.test(contentType ?? "")) return "grpc-web";
  if (/^application\/grpc/i.test(contentType ?? "")) return "grpc";
  return "connect";
}
