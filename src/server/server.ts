/**
 * createServer({source}): the registry, the service and the fetch app wired
 * together. Runtime-neutral; see listen-node.ts for a Node socket.
 */
import type { Hono } from "hono";
import { createRegistry, type Limits, type ListenerRegistry } from "../core/registry.ts";
import type { TaskstatsSource } from "../sources/source.ts";
import type { ConnectRouter } from "@connectrpc/connect";
import type { Compression } from "@connectrpc/connect/protocol";
import { createApp, createRoutes } from "./app.ts";

/** Options of createServer. */
export interface ServerOptions {
  /** Where stats come from (netlink or sim). */
  readonly source: TaskstatsSource;
  /** Limits and defaults; unset ones keep DEFAULT_LIMITS. */
  readonly limits?: Partial<Limits>;
  /** Browser origins allowed to call the API (CORS); none by default. */
  readonly corsOrigins?: readonly string[];
  /**
   * Response compression offered to clients that accept it (e.g. connect-node's
   * compressionGzip). None by default: exit records are small, and gzip cost
   * gRPC streams more CPU than everything else together (48k events/s with it, 93-100k without).
   */
  readonly compression?: readonly Compression[];
}

/** A taskwire server not yet bound to a socket. */
export interface TaskwireServer {
  readonly source: TaskstatsSource;
  readonly registry: ListenerRegistry;
  readonly app: Hono;
  /** The Connect routes, for hosts that serve RPC themselves (gRPC over HTTP/2 on Node). */
  readonly routes: (router: ConnectRouter) => void;
  /** Response compression offered (ServerOptions.compression). */
  readonly compression: readonly Compression[];
  /** The fetch handler (Deno.serve, Bun.serve, or any Fetch API host). */
  fetch(request: Request): Response | Promise<Response>;
  /** Ends every stream, removes every listener and closes the source. */
  close(): Promise<void>;
}

/** Wires a source into a servable app. */
export function createServer(options: ServerOptions): TaskwireServer {
  const { source } = options;
  const registry = createRegistry({ source, ...(options.limits && { limits: options.limits }) });
  const routes = createRoutes({ source, registry });
  const compression = options.compression ?? [];
  const app = createApp({ source, registry, routes, compression, ...(options.corsOrigins && { corsOrigins: options.corsOrigins }) });
  return { source, registry, app, routes, compression, fetch: (req) => app.fetch(req), close: () => registry.close() };
}
