/**
 * createServer({source}): the listener core, the RPC service and the one
 * HTTP app wired together. Runtime-neutral: a runtime adapter (runtime/)
 * binds it to a socket.
 */
import { type ContextValues, createConnectRouter, createContextValues } from "@connectrpc/connect";
import type { Compression, UniversalHandler } from "@connectrpc/connect/protocol";
import { type AuditLog, createAuditLog } from "../auth/audit.ts";
import { type Authenticator, createAuthenticator, type Peer } from "../auth/authenticator.ts";
import type { UnauthenticatedError } from "../auth/errors.ts";
import { addressBucket, type AdmissionLimits, callerBucket, createAdmission } from "../core/admission.ts";
import type { Share } from "../core/budget.ts";
import { startHousekeeping } from "../core/housekeeping.ts";
import type { LossCounters } from "../core/listener-options.ts";
import type { Limits } from "../core/limits.ts";
import { createRegistry, type RegistryStats } from "../core/registry.ts";
import { TaskStats } from "../gen/taskwire/v1/taskstats_pb.ts";
import type { ExitRecord } from "../kernel/exit-record.ts";
import { errorDetailInterceptor, withErrorDetails } from "../rpc/error-responses.ts";
import { createEncodeGate } from "../rpc/encode-gate.ts";
import { limitTimeouts } from "./timeout-limit.ts";
import { reflectionRoutes } from "../rpc/reflection.ts";
import { createTaskStatsService } from "../rpc/service.ts";
import type { StalledStream } from "../rpc/requests.ts";
import type { CgroupCallLimits } from "../rpc/cgroup-stats.ts";
import { type CallHold, HELD_CALL } from "../rpc/held-call.ts";
import { CALL_AUTH, type CallAuth } from "../rpc/principal.ts";
import type { ServerRegistry } from "../rpc/stream.ts";
import type { TaskstatsSource } from "../sources/source.ts";
import type { FleetPublisher } from "../fleet/publisher.ts";
import { readCapabilities } from "../sys/capabilities.ts";
import { VERSION } from "../version.ts";
import type { Logger } from "@logtape/logtape";
import { createAccessLog } from "../log/access-log.ts";
import { createErrorLog, errorFields, logUnexpected } from "../log/error-log.ts";
import { createLineBudget } from "../log/line-budget.ts";
import { logText, taskwireLogger } from "../log/logger.ts";
import { type AppEnv, createApp, hostRefusal } from "./app.ts";
import { readHostIdentity } from "./host-identity.ts";
import { createLoadMeter } from "./load.ts";
import { retainPayload, serverMemory } from "./memory.ts";
import { DEFAULT_MAX_MESSAGE_BYTES, limitMessageSize } from "./message-limit.ts";
import { type ConnectionLimit, createServerMetrics } from "./metrics.ts";
import { withPreEncodedStreams } from "./pre-encoded-streams.ts";

/** The longest timeout a request may set (Node's timers hold at most 2^31-1 ms, about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

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
  /** How callers authenticate (bearer tokens, client certificates); none: every caller is anonymous with every role. */
  readonly authenticator?: Authenticator;
  /** Where refused calls are logged (default: warning records of taskwire.audit, rate-limited). */
  readonly audit?: AuditLog;
  /** taskwire's logger (log/logger.ts); default taskwireLogger(), silent until LogTape is configured. */
  readonly logger?: Logger;
  /**
   * The access log: one record per RPC and per stream end (default true);
   * `linesPerSecond` caps it (failed calls: a tenth of it), default DEFAULT_ACCESS_LOG_RATE.
   */
  readonly accessLog?: boolean | { readonly linesPerSecond?: number };
  /**
   * Prometheus metrics at /metrics, for principals with the "metrics" role
   * (default true); false: no /metrics and no counting.
   */
  readonly metrics?: boolean;
  /** How long one /metrics exposition serves every scrape, ms (default DEFAULT_METRICS_CACHE_MS, 1 s; 0: none). */
  readonly metricsCacheMs?: number | undefined;
  /** Host header check (DNS rebinding): a function that says which Host values are this server's; none: any. */
  readonly hostAllowed?: (host: string | null | undefined) => boolean;
  /** Streams and unary call rates per principal; unset ones keep DEFAULT_ADMISSION. */
  readonly admission?: Partial<AdmissionLimits>;
  /**
   * Largest request message accepted, bytes (default DEFAULT_MAX_MESSAGE_BYTES);
   * a larger one is refused (RESOURCE_EXHAUSTED) from its length, before it is read.
   */
  readonly maxMessageBytes?: number;
  /**
   * Bytes everything held per client may take in all (queued and retained
   * events, in-flight batches, listeners); default: defaultMemoryBudget() in
   * memory.ts. Past it, exits are dropped with loss markers and new listeners
   * are refused (RESOURCE_EXHAUSTED).
   */
  readonly memoryBudget?: number | undefined;
  /** Most of the memory budget one principal may hold: bytes, or { fraction } of it; default: all of it. */
  readonly memoryBudgetPerPrincipal?: Share | undefined;
  /** The hostname the server reports (GetInfo, streams); default: this machine's (uname -n). */
  readonly hostName?: string | undefined;
  /**
   * The fleet publisher (fleet/publisher.ts startFleetPublisher): an internal
   * listener on every CPU publishing to NATS JetStream; closed with the server.
   */
  readonly fleet?: FleetPublisher | undefined;
  /** GetCgroupStats' counts in flight and time limit; unset ones keep DEFAULT_CGROUP_CALLS. */
  readonly cgroupCalls?: Partial<CgroupCallLimits> | undefined;
}

/** What a runtime adapter does with a request it serves itself (real gRPC): go on with these context values, or refuse. */
export type Admitted = { readonly values: ContextValues } | { readonly refusal: string };

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

/** A request's caller as a runtime adapter sees it (TaskwireServer.caller). */
export interface Caller {
  /** The name it is counted under where callers share something: its principal, or its address's bucket. */
  readonly key: string;
  /** Whether its credentials name a principal (always so with authentication off). */
  readonly credentialed: boolean;
  /**
   * Its authentication's outcome, for the handlers (fetch's env `auth`,
   * admit's `caller`): a request is authenticated once, however many of the
   * server's parts look at its caller.
   */
  readonly auth: CallAuth;
}

/** A request counted as under way (TaskwireServer.holdCall). */
export interface HeldCall {
  /** Why the request is over a limit of calls under way; undefined when it is within them. */
  readonly refusal: string | undefined;
  /**
   * Past twice a limit: the caller does not read its refusals either, so
   * this one gets none (the adapter resets its HTTP/2 stream, REFUSED_STREAM,
   * or closes its HTTP/1.1 connection), since an answer would be held too.
   */
  readonly flooding: boolean;
  /** Ends the count (once; later calls do nothing): when the response is delivered or the connection gone. */
  release(): void;
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
  fetch(request: Request, env?: AppEnv): Response | Promise<Response>;
  /**
   * The same RPC handlers in connect's runtime-neutral form, for a runtime
   * adapter whose HTTP/2 has trailers (Node's) to serve real gRPC with,
   * including server reflection (a bidirectional stream).
   */
  readonly rpcHandlers: readonly UniversalHandler[];
  /**
   * The checks the app makes before an RPC (Host, authentication), for a
   * request an adapter serves with rpcHandlers: the context values to pass
   * them, or why the request is refused. `caller` is the request's
   * (TaskwireServer.caller), `held` its count as a call under way.
   */
  admit(caller: Caller, request: { readonly host: string | null | undefined; readonly held?: CallHold }): Admitted;
  /**
   * Who a request's caller is to a runtime adapter, authenticated once:
   * `key`, the name it is counted under where callers share something (the
   * Node adapter's pacing of new connections): its principal, or for a
   * caller that fails to authenticate, its address; and `credentialed`,
   * whether its credentials name a principal: always with authentication
   * off, with it on only for a valid token or client certificate (the Node
   * adapter keeps no connection open for others).
   */
  caller(peer: Peer | undefined, authorization: string | null | undefined): Caller;
  /**
   * Counts a request of `caller` as a call under way until it is released:
   * a response its client does not read is held in memory, so calls under
   * way are limited per principal and in all (--max-calls-in-flight-per-principal,
   * --max-calls-in-flight; callers without valid credentials in a small pool
   * of their own). Pass the handlers a CallHold made of it (fetch's env
   * `held`, admit's `held`): a SubscribeExits stream admitted as a stream
   * hands its stream count over for the adapter to end once the response is
   * delivered. A unary RPC over a limit is refused by its handler
   * (RESOURCE_EXHAUSTED, in its own protocol); the adapter answers other
   * paths itself with `refusal`, and answers none while the caller is `flooding`.
   */
  holdCall(caller: Caller): HeldCall;
  /**
   * A runtime adapter refused or closed a connection at one of its caps (--max-connections,
   * --max-connections-per-address, or the HTTP/2 reset limits): counted for /metrics
   * (taskwire_connections_refused_total).
   */
  refusedConnection(limit: ConnectionLimit): void;
  /** Totals: listeners, streams, watched CPUs, losses by reason. */
  stats(): RegistryStats;
  /** Every listener, as a snapshot. */
  listeners(): ListenerSnapshot[];
  /** Ends every stream (UNAVAILABLE), removes every listener and closes the source. */
  close(): Promise<void>;
}

export type { ConnectionLimit } from "./metrics.ts";

/** Wires a source into a servable server. */
export function createServer(options: ServerOptions): TaskwireServer {
  const { source } = options;
  const connectionRefusals: Record<ConnectionLimit, number> = {
    "max-connections": 0,
    "max-connections-per-address": 0,
    "h2-max-resets-per-second": 0,
    "h2-max-resets-per-second-per-address": 0,
  };
  // Its inputs are read at scrape time, by then all made; its feed counts records per CPU on their way in.
  const metrics = options.metrics === false ? undefined : createServerMetrics({
    source,
    stats: () => registry.stats(),
    authFailures: () => audit.counts,
    connectionRefusals: () => connectionRefusals,
    loopUtilization: () => load.utilization,
    version: VERSION,
    cacheMs: options.metricsCacheMs,
    ...(options.fleet && { fleet: options.fleet.state.bind(options.fleet) }),
  });
  const deliveryErrors = createErrorLog({ perSecond: 1, ...(options.logger && { logger: options.logger }) });
  const registry: ServerRegistry = createRegistry<ExitRecord, Uint8Array>({
    feed: metrics?.feed ?? source,
    retain: retainPayload,
    limits: options.limits,
    memory: serverMemory(options),
    // Its own line budget: a failure that repeats per record must not starve the process's other error lines.
    onDeliveryError: (err, { unrecovered, ...failure }) =>
      deliveryErrors("passing an exit record to a listener failed (a server bug: please report it)", err, {
        ...failure,
        ...(unrecovered !== undefined && { unrecovered: errorFields(unrecovered)["error"] }),
      }),
  });
  const host = readHostIdentity(source.info(), options.hostName);
  options.fleet?.attach({ registry, cpus: source.possible.cpus, hostname: host.hostname });
  const housekeeping = startHousekeeping(registry, (what, err) => logUnexpected(`housekeeping: ${what} failed`, err));
  const load = createLoadMeter();
  const admission = createAdmission(options.admission);
  const authenticator = options.authenticator ?? createAuthenticator();
  const logger = options.logger ?? taskwireLogger();
  const audit = options.audit ?? createAuditLog({ logger });
  const access = options.accessLog === false
    ? undefined
    : createAccessLog({ logger, ...(typeof options.accessLog === "object" && options.accessLog) });
  const callAuth = (peer: Peer | undefined, authorization: string | null | undefined): CallAuth => {
    const address = peer?.address ?? "";
    try {
      return { principal: authenticator.authenticate(peer, authorization), address, audit };
    } catch (err) {
      return { failure: err as UnauthenticatedError, address, audit };
    }
  };
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const routerOptions = {
    acceptCompression: [...(options.compression ?? [])],
    readMaxBytes: maxMessageBytes,
    // connect-es times a request's deadline with setTimeout, which holds at most 2^31-1 ms: a longer
    // timeout fired after 1 ms (and printed a TimeoutOverflowWarning per request). Past it: INVALID_ARGUMENT.
    maxTimeoutMs: MAX_TIMER_MS,
    // Every error carries an ErrorDetail, those connect-es raises included (withErrorDetails below for unary calls).
    interceptors: [
      ...(access ? [access.interceptor] : []),
      ...(metrics ? [metrics.interceptor] : []),
      errorDetailInterceptor,
    ],
  };
  const router = createConnectRouter(routerOptions);
  const service = createTaskStatsService({
    source,
    registry,
    version: VERSION,
    lingerMs: load.lingerMs,
    encodeGate: createEncodeGate(),
    admission,
    capabilities: readCapabilities,
    host,
    onStalled: stalledLog(logger),
    ...(options.fleet && { fleet: options.fleet.state.bind(options.fleet) }),
    cgroupCalls: options.cgroupCalls,
  });
  router.service(TaskStats, service);
  reflectionRoutes([TaskStats])(router);
  // SubscribeExits' binary Connect streams send their batches' envelopes as they are (pre-encoded-streams.ts).
  const subscribe = { method: TaskStats.method.subscribeExits, impl: service.subscribeExits };
  const handlers = limitTimeouts(withPreEncodedStreams(router.handlers, subscribe, routerOptions), MAX_TIMER_MS);
  const detailed = withErrorDetails(limitMessageSize(handlers, maxMessageBytes), options.compression);
  // The access log is outermost: it counts the bytes the wire carried and sees the final response.
  const rpcHandlers = access?.wrap(detailed) ?? detailed;
  const app = createApp({
    callAuth,
    hostAllowed: options.hostAllowed,
    rpcHandlers,
    // Public (load balancers probe it): with authentication on, it says no more than that the server is up.
    health: () => ({
      status: "ok",
      source: source.info().source,
      version: VERSION,
      ...(!authenticator.required && { listeners: registry.stats().listeners }),
    }),
    ...(options.corsOrigins && { corsOrigins: options.corsOrigins }),
    ...(metrics && { metrics: metrics.render }),
  });
  return {
    source,
    fetch: (req, env) => app.fetch(req, env ?? {}),
    rpcHandlers,
    admit: (caller, { host, held }) => {
      if (options.hostAllowed !== undefined && !options.hostAllowed(host)) return { refusal: hostRefusal(host) };
      const values = createContextValues().set(CALL_AUTH, caller.auth);
      return { values: held === undefined ? values : values.set(HELD_CALL, held) };
    },
    caller: (peer, authorization) => {
      const auth = callAuth(peer, authorization);
      if (auth.principal === undefined) {
        return { key: `unauthenticated@${addressBucket(auth.address)}`, credentialed: false, auth };
      }
      const key = auth.principal.via === "none" ? callerBucket(auth.principal.id) : auth.principal.id;
      return { key, credentialed: true, auth };
    },
    refusedConnection: (limit) => void connectionRefusals[limit]++,
    holdCall: ({ key, credentialed }) => {
      const release = admission.holdCall(key, credentialed);
      return {
        refusal: admission.callsRefusal(key, credentialed),
        flooding: admission.callsFlooding(key, credentialed),
        release,
      };
    },
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
      await registry.close();
      await options.fleet?.close();
    },
  };
}

// A warning per stream ended as stalled, at most 10 a second (a principal may hold hundreds; the rest are counted).
function stalledLog(logger: Logger): (stalled: StalledStream) => void {
  const budget = createLineBudget(10, (n) => logText(logger, "warning", `${n} more stalled streams ended, not logged`));
  return (s) => {
    if (!budget.take()) return;
    logText(logger, "warning", `SubscribeExits stream of listener ${s.listenerId} ended: ${s.why}`, {
      owner: s.owner, // the listener's owner: an anonymous caller's address bucket (anonymous@loopback)
      ...(!s.reset && { transport: "kept: no adapter can drop it; it ends if its client reads again" }),
    });
  };
}
