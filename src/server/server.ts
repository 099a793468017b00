/**
 * createServer({source}): the listener core, the RPC service and the one
 * HTTP app wired together. Runtime-neutral: a runtime adapter (runtime/)
 * binds it to a socket.
 */
import { createConnectRouter } from "@connectrpc/connect";
import type { Compression, UniversalHandler } from "@connectrpc/connect/protocol";
import { startHousekeeping } from "../core/housekeeping.ts";
import type { LossCounters } from "../core/listener.ts";
import { createRegistry, type Limits, type RegistryStats } from "../core/registry.ts";
import { TaskStats } from "../gen/taskwire/v1/taskstats_pb.ts";
import type { ExitRecord } from "../kernel/exit-record.ts";
import { exitBody } from "../rpc/fast-binary/batch.ts";
import { reflectionRoutes } from "../rpc/reflection.ts";
import { createTaskStatsService } from "../rpc/service.ts";
import type { ServerRegistry } from "../rpc/stream.ts";
import type { TaskstatsSource } from "../sources/source.ts";
import { VERSION } from "../version.ts";
import { createApp } from "./app.ts";
import { createLoadMeter } from "./load.ts";

/** Options of createServer. */
export interface ServerOptions {
  /** Where stats come from (netlink or sim). */
  readonly source: TaskstatsSource;
  /** Limits and defaults; unset ones keep DEFAULT_LIMITS. */
  readonly limits?: Partial<Limits>;
  /** Browser origins allowed to call the API (CORS); none by default. "*" allows any. */
  readonly corsOrigins?: readonly string[];
  /**
   * Response compression offered to clients that accept it (e.g. connect-node's
   * compressionGzip), on every protocol. None by default: exit records are
   * small, and compressing them costs more CPU than streaming them (BENCHMARKS.md).
   */
  readonly compression?: readonly Compression[];
}

/** One listener as the server reports it (a snapshot). */
export interface ListenerSnapshot {
  readonly id: string;
  readonly cpumask: string;
  readonly streaming: boolean;
  readonly ephemeral: boolean;
  readonly queueDepth: number;
  readonly queueCapacity: number;
  readonly produced: number;
  readonly delivered: number;
  readonly lost: Readonly<LossCounters>;
}

/** A taskwire server not yet bound to a socket. */
export interface TaskwireServer {
  /** Where stats come from. */
  readonly source: TaskstatsSource;
  /**
   * The Fetch API handler: Connect, gRPC-Web, /healthz and /ui on any
   * runtime. Real gRPC (application/grpc) gets 415 here: it needs HTTP/2
   * trailers, which a fetch Response cannot carry.
   */
  fetch(request: Request): Response | Promise<Response>;
  /**
   * The same RPC handlers in connect's runtime-neutral form, for a runtime
   * adapter whose HTTP/2 has trailers (Node's) to serve real gRPC with,
   * including server reflection (a bidirectional stream).
   */
  readonly rpcHandlers: readonly UniversalHandler[];
  /** Totals: listeners, streams, watched CPUs, losses by reason. */
  stats(): RegistryStats;
  /** Every listener, as a snapshot. */
  listeners(): ListenerSnapshot[];
  /** Ends every stream (UNAVAILABLE), removes every listener and closes the source. */
  close(): Promise<void>;
}

/** Wires a source into a servable server. */
export function createServer(options: ServerOptions): TaskwireServer {
  const { source } = options;
  const registry: ServerRegistry = createRegistry<ExitRecord, Uint8Array>({
    feed: source,
    retain: exitBody,
    limits: options.limits,
  });
  const housekeeping = startHousekeeping(registry);
  const load = createLoadMeter();
  const router = createConnectRouter({ acceptCompression: [...(options.compression ?? [])] });
  router.service(TaskStats, createTaskStatsService({ source, registry, version: VERSION, lingerMs: load.lingerMs }));
  reflectionRoutes([TaskStats])(router);
  const app = createApp({
    rpcHandlers: router.handlers,
    health: () => ({
      status: "ok",
      source: source.info().source,
      version: VERSION,
      listeners: registry.stats().listeners,
    }),
    ...(options.corsOrigins && { corsOrigins: options.corsOrigins }),
  });
  return {
    source,
    fetch: (req) => app.fetch(req),
    rpcHandlers: router.handlers,
    stats: () => registry.stats(),
    listeners: () =>
      [...registry.listeners()].map((l) => ({
        id: l.id,
        cpumask: registry.cpumaskOf(l),
        streaming: l.attached,
        ephemeral: l.ephemeral,
        queueDepth: l.queue.depth,
        queueCapacity: l.queue.capacity,
        produced: l.produced,
        delivered: l.delivered,
        lost: { ...l.lost },
      })),
    close: async () => {
      housekeeping.stop();
      load.close();
      await registry.close();
    },
  };
}
