/**
 * The one HTTP app (hono) every request but real gRPC reaches, on every
 * runtime and protocol (HTTP/1.1, h2c, TLS): Connect and gRPC-Web through the
 * Fetch API, /healthz, /ui and the index. Middleware added here (CORS today)
 * therefore applies on every path. Real gRPC needs HTTP/2 trailers, which a
 * fetch Response cannot carry: runtime adapters that have them send
 * application/grpc to the universal handlers before this app; here it gets a
 * 415 that says so.
 */
import { cors as connectCors } from "@connectrpc/connect";
import { createFetchHandler, type UniversalHandler } from "@connectrpc/connect/protocol";
import { Hono } from "hono";
import { cors } from "hono/cors";
import { VERSION } from "../version.ts";
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
  /** Origins other than the server's own allowed to call the API from browsers ("*" for any). */
  readonly corsOrigins?: readonly string[];
}

/** Real gRPC, not gRPC-Web: application/grpc, application/grpc+proto, application/grpc+json. */
export function isGrpc(contentType: string | null | undefined): boolean {
  return contentType != null && /^application\/grpc(?:$|[+;])/i.test(contentType);
}

const GRPC_NEEDS_H2 =
  "gRPC needs HTTP/2 with trailers: use an HTTP/2 client (h2c or TLS) against taskwire on Node, or the Connect or gRPC-Web protocol";

/** Builds the app. */
export function createApp(options: AppOptions): Hono {
  const app = new Hono();
  const origins = options.corsOrigins ?? [];
  if (origins.length > 0) {
    app.use(
      "/taskwire.v1.TaskStats/*",
      cors({
        origin: origins.includes("*") ? "*" : [...origins],
        allowMethods: [...connectCors.allowedMethods],
        allowHeaders: [...connectCors.allowedHeaders],
        exposeHeaders: [...connectCors.exposedHeaders],
        maxAge: 7200,
      }),
    );
  }
  for (const handler of options.rpcHandlers) {
    const fetchHandler = createFetchHandler(handler);
    app.on([...handler.allowedMethods], handler.requestPath, (c) => {
      if (isGrpc(c.req.header("content-type"))) return c.text(GRPC_NEEDS_H2, 415);
      return fetchHandler(c.req.raw);
    });
  }
  addUi(app);
  app.get("/healthz", (c) => c.json(options.health()));
  app.get("/", (c) =>
    c.text(
      `taskwire ${VERSION}: Linux taskstats over Connect, gRPC-Web and gRPC.\n` +
        "Service: /taskwire.v1.TaskStats/{GetPid,GetTgid,Register,Deregister,SubscribeExits,GetInfo}\n" +
        "Health: /healthz\nLive exits in a browser: /ui\n",
    ));
  app.notFound((c) =>
    c.json(
      {
        code: "not_found",
        message: `no route ${c.req.method} ${c.req.path}; the API lives under /taskwire.v1.TaskStats/`,
      },
      404,
    )
  );
  return app;
}
