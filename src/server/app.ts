/**
 * The one HTTP app (hono) every request but real gRPC reaches, on every
 * runtime and protocol (HTTP/1.1, h2c, TLS): Connect and gRPC-Web through the
 * Fetch API, /healthz, /ui and the index. Middleware added here (the Host
 * check, CORS, authentication) therefore applies on every path. Real gRPC
 * needs HTTP/2 trailers, which a fetch Response cannot carry: runtime
 * adapters that have them send application/grpc to the universal handlers
 * (through the server's `admit`, the same checks); here it gets a 415 that
 * says so.
 */
import { cors as connectCors, createContextValues } from "@connectrpc/connect";
import {
  type UniversalHandler,
  universalServerRequestFromFetch,
  universalServerResponseToFetch,
} from "@connectrpc/connect/protocol";
import { type Context, Hono } from "hono";
import { cors } from "hono/cors";
import { HTTPException } from "hono/http-exception";
import { quote } from "../core/errors.ts";
import { logUnexpected } from "../log/error-log.ts";
import type { Peer } from "../auth/authenticator.ts";
import { type CallHold, HELD_CALL } from "../rpc/held-call.ts";
import { CALL_AUTH, type CallAuth } from "../rpc/principal.ts";
import { TRANSPORT_SINK } from "../rpc/stream-sink.ts";
import type { StreamSink } from "../core/subscription.ts";
import { VERSION } from "../version.ts";
import { type Exposition, metricsResponse } from "./metrics.ts";
import { addUi } from "./ui.ts";

/** What the app serves. */
export interface AppOptions {
  /**
   * The RPC handlers (one router's). Bidirectional ones (server reflection)
   * work where the connection is full duplex: HTTP/2, on any protocol.
   */
  readonly rpcHandlers: readonly UniversalHandler[];
  /** The /healthz body. */
  readonly health: () => Record<string, unknown>;
  /** Authenticates one call (the outcome goes to the handler, which refuses in the call's own protocol). */
  readonly callAuth: (peer: Peer | undefined, authorization: string | null) => CallAuth;
  /** Refuses requests whose Host is not one of this server's names (undefined: any Host). */
  readonly hostAllowed?: ((host: string | null | undefined) => boolean) | undefined;
  /** Origins other than the server's own allowed to call the API from browsers ("*" for any). */
  readonly corsOrigins?: readonly string[];
  /** The /metrics exposition (served to callers with the "metrics" role); undefined: no /metrics. */
  readonly metrics?: (() => Promise<Exposition>) | undefined;
}

/** The runtime adapter's per-request facts, as hono's env. */
export interface AppEnv {
  readonly peer?: Peer | undefined;
  /** The adapter's count of this request as a call under way (TaskwireServer.holdCall), if it keeps one. */
  readonly held?: CallHold | undefined;
  /** Its authentication's outcome where the adapter has it already (TaskwireServer.caller): not authenticated again. */
  readonly auth?: CallAuth | undefined;
  /**
   * Called as the app routes the request to a server-streaming RPC (SubscribeExits), before its handler runs:
   * what the adapter does only for streams (pacing, a body of its own that it can drop) follows the app's
   * routing, which decodes and normalizes the path (%53ubscribeExits, /x/../), never a path the adapter parsed
   * itself. Returns the response's own sink of body bytes (rpc/stream-sink.ts), where the adapter offers one.
   */
  readonly streaming?: (() => StreamSink<Uint8Array> | undefined) | undefined;
  /**
   * Called as the app routes the request to a client- or bidi-streaming RPC (server reflection), whose request
   * keeps coming: the adapter lifts its request deadline, as the app routes it (the same paths as `streaming`).
   */
  readonly longRequest?: (() => void) | undefined;
}

/** Real gRPC, not gRPC-Web: application/grpc, application/grpc+proto, application/grpc+json. */
export function isGrpc(contentType: string | null | undefined): boolean {
  return contentType != null && /^application\/grpc(?:$|[+;])/i.test(contentType);
}

const GRPC_NEEDS_H2 =
  "gRPC needs HTTP/2 with trailers: use an HTTP/2 client (h2c or TLS) against taskwire on Node, or the Connect or gRPC-Web protocol";

/** What a refused Host is told. */
export function hostRefusal(host: string | null | undefined): string {
  const shown = (host ?? "").slice(0, 100);
  return `Host "${shown}" is not a name of this server: without authentication, or on loopback, it answers only to ` +
    "loopback names, its own hostname and addresses, and names given with --allowed-host, which keeps web pages from reaching it through DNS rebinding";
}

/** Builds the app. */
export function createApp(options: AppOptions): Hono<{ Bindings: AppEnv }> {
  const app = new Hono<{ Bindings: AppEnv }>();
  const hostAllowed = options.hostAllowed;
  if (hostAllowed !== undefined) {
    app.use("*", async (c, next) => {
      // The request URL's host is Host on HTTP/1.1 and :authority on HTTP/2, as the runtime's adapter built it; a
      // Host no URL can be made of (empty, with a space; none on HTTP/1.0) is no name of this server either.
      const host = urlHost(c.req.url);
      if (host === undefined || !hostAllowed(host)) return c.text(hostRefusal(host ?? c.req.header("host")), 403);
      await next();
    });
  }
  // An error a route did not catch (hono's own handler prints every one).
  app.onError((err, c) =>
    err instanceof HTTPException ? err.getResponse() : internalError(err, { path: c.req.path.slice(0, 200) })
  );
  addCors(app, options.corsOrigins ?? []);
  for (const handler of options.rpcHandlers) {
    app.on([...handler.allowedMethods], handler.requestPath, async (c) => {
      if (isGrpc(c.req.header("content-type"))) return c.text(GRPC_NEEDS_H2, 415);
      const auth = authOf(c, options.callAuth);
      const kind = handler.method.methodKind;
      if (kind === "client_streaming" || kind === "bidi_streaming") c.env?.longRequest?.();
      const sink = kind === "server_streaming" ? c.env?.streaming?.() : undefined;
      const ureq = {
        ...universalServerRequestFromFetch(c.req.raw, {}),
        contextValues: createContextValues().set(CALL_AUTH, auth).set(HELD_CALL, c.env?.held ?? HELD_CALL.defaultValue)
          .set(TRANSPORT_SINK, sink),
      };
      const res = universalServerResponseToFetch(await handler(ureq));
      return res.status === 415 && res.body === null ? unsupportedMedia(c.req.raw) : res;
    });
  }
  addUi(app);
  app.get("/healthz", (c) => c.json(options.health()));
  const metrics = options.metrics;
  if (metrics !== undefined) {
    app.get(
      "/metrics",
      (c) => metricsResponse(metrics, authOf(c, options.callAuth)),
    );
  }
  app.get("/", (c) =>
    c.text(
      `taskwire ${VERSION}: Linux taskstats over Connect, gRPC-Web and gRPC.\n` +
        "Service: /taskwire.v1.TaskStats/{GetPid,GetTgid,Register,Deregister,SubscribeExits,GetInfo,GetCgroupStats}\n" +
        "Health: /healthz\nLive exits in a browser: /ui\n",
    ));
  // An RPC's path with a method it does not take (a GET of Register, a PUT): 405 with Allow, not "no route".
  const allowed = new Map(options.rpcHandlers.map((h) => [h.requestPath, h.allowedMethods.join(", ")]));
  app.notFound((c) => {
    const allow = allowed.get(c.req.path);
    if (allow !== undefined) {
      const message = `${c.req.path} takes ${allow}, not ${c.req.method.slice(0, 20)}`;
      return c.json({ code: "unimplemented", message }, 405, { allow });
    }
    return c.json(
      {
        code: "not_found",
        message: `no route ${c.req.method} ${c.req.path}; the API lives under /taskwire.v1.TaskStats/`,
      },
      404,
    );
  });
  return app;
}

/**
 * The answer to an error nothing caught, the app's or a runtime's (the Deno
 * and Bun adapters' handlers): a plain 500 with no detail, the error logged at
 * most a few times a second. Bun's own, in its development mode, is a page of
 * the server's source and paths.
 */
export function internalError(err: unknown, fields: Record<string, string> = {}): Response {
  logUnexpected("serving a request failed", err, fields);
  return plainText("internal error\n", 500);
}

/** A plain-text answer (UTF-8): the runtimes' and the app's own refusals that are no RPC error. */
export function plainText(text: string, status: number): Response {
  return new Response(text, { status, headers: { "content-type": "text/plain; charset=UTF-8" } });
}

function urlHost(url: string): string | undefined {
  try {
    return new URL(url).host;
  } catch {
    return undefined;
  }
}

// connect-es answers a content type (or a Connect GET's encoding) it cannot take with an empty 415: say what it takes.
function unsupportedMedia(req: Request): Response {
  const type = req.headers.get("content-type");
  const what = req.method === "GET"
    ? `a Connect GET with encoding=${quote(new URL(req.url).searchParams.get("encoding") ?? "")}`
    : `content-type ${quote(type ?? "")}`;
  return plainText(
    `${what} is not one this method takes: Connect sends application/json or application/proto ` +
      "(streams application/connect+json or application/connect+proto), gRPC-Web application/grpc-web+proto " +
      "or application/grpc-web+json, a Connect GET ?encoding=json or ?encoding=proto with message=...\n",
    415,
  );
}

// The request's authentication: the adapter's, or made here (an adapter that keeps no count, a test's fetch).
function authOf(c: Context<{ Bindings: AppEnv }>, callAuth: AppOptions["callAuth"]): CallAuth {
  return c.env?.auth ?? callAuth(c.env?.peer, c.req.header("authorization") ?? null);
}

function addCors(app: Hono<{ Bindings: AppEnv }>, origins: readonly string[]): void {
  if (origins.length === 0) return;
  app.use(
    "/taskwire.v1.TaskStats/*",
    cors({
      origin: origins.includes("*") ? "*" : [...origins],
      allowMethods: [...connectCors.allowedMethods],
      // Authorization: browsers send bearer tokens too.
      allowHeaders: [...connectCors.allowedHeaders, "Authorization"],
      exposeHeaders: [...connectCors.exposedHeaders],
      maxAge: 7200,
    }),
  );
}
