/**
 * The HTTP surface as a runtime-neutral fetch app: hono for the plain routes,
 * the Connect router mounted inside it through the Fetch API (Connect JSON
 * and binary, gRPC-Web). Real gRPC needs HTTP trailers a fetch Response cannot
 * carry, so the router runs with `grpc: false` and gRPC callers get a clear
 * 415 here.
 */
import { cors as connectCors, createConnectRouter, type ConnectRouter } from "@connectrpc/connect";
import type { Compression } from "@connectrpc/connect/protocol";
import { createFetchHandler } from "@connectrpc/connect/protocol";
import { Hono } from "hono";
import { cors } from "hono/cors";
import { addUi } from "./ui.ts";
import { TaskStats } from "../gen/taskwire/v1/taskstats_pb.ts";
import { createTaskStatsService } from "../rpc/service.ts";
import type { ListenerRegistry } from "../core/registry.ts";
import type { TaskstatsSource } from "../sources/source.ts";
import { VERSION } from "../version.ts";

/** What the app serves. */
export interface AppOptions {
  readonly source: TaskstatsSource;
  readonly registry: ListenerRegistry;
  /** The Connect routes (default: createRoutes over source and registry). */
  readonly routes?: (router: ConnectRouter) => void;
  /** Origins other than the server's own allowed to call the API from browsers ("*" for any). */
  readonly corsOrigins?: readonly string[];
  /** Response compression offered to clients that accept it (none by default). */
  readonly compression?: readonly Compression[];
}

/** The Connect routes of the TaskStats service. */
export function createRoutes(options: AppOptions): (router: ConnectRouter) => void {
  const impl = createTaskStatsService({ source: options.source, registry: options.registry, version: VERSION });
  return (router) => router.service(TaskStats, impl);
}

/** Builds the hono app with the Connect router mounted. */
export function createApp(options: AppOptions): Hono {
  const app = new Hono();
  if (options.corsOrigins !== undefined && options.corsOrigins.length > 0) {
    const origins = [...options.corsOrigins];
    app.use("/taskwire.v1.TaskStats/*", cors({
      origin: origins.includes("*") ? "*" : origins,
      allowMethods: [...connectCors.allowedMethods],
      allowHeaders: [...connectCors.allowedHeaders],
      exposeHeaders: [...connectCors.exposedHeaders],
      maxAge: 7200,
    }));
  }
  const router = createConnectRouter({ grpc: false, acceptCompression: [...(options.compression ?? [])] });
  (options.routes ?? createRoutes(options))(router);
  for (const handler of router.handlers) {
    const fetchHandler = createFetchHandler(handler);
    app.on(handler.allowedMethods as string[], handler.requestPath, (c) => fetchHandler(c.req.raw));
  }
  addUi(app);
  app.get("/healthz", (c) => {
    const info = options.source.info();
    return c.json({ status: "ok", source: info.source, version: VERSION, listeners: options.registry.stats().listeners });
  });
  app.get("/", (c) =>
    c.text(`taskwire ${VERSION}: Linux taskstats over Connect, gRPC-Web and gRPC.\nService: /taskwire.v1.TaskStats/{GetPid,GetTgid,Register,Deregister,SubscribeExits,GetInfo}\nHealth: /healthz\nLive exits in a browser: /ui\n`),
  );
  app.notFound((c) => c.json({ code: "not_found", message: `no route ${c.req.method} ${c.req.path}; the API lives under /taskwire.v1.TaskStats/` }, 404));
  return app;
}
