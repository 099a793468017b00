/**
 * The server's Prometheus series (prom-client, one Registry per server; the
 * process's own series come from _metrics-process.ts). Nothing here runs per
 * record but two array increments in the counting feed (_metrics-source.ts): gauges and the
 * source's counters are read when a scrape asks (collect callbacks over
 * registry.stats(), source.info() and the audit log's counts), and RPCs are
 * counted once per call by an interceptor (_metrics-rpc.ts).
 */
import { createContextValues, type Interceptor } from "@connectrpc/connect";
import { Counter, Gauge, Registry, type Registry as PromRegistry } from "prom-client";
import type { AuditLog } from "../auth/audit.ts";
import { UnauthenticatedError } from "../auth/errors.ts";
import type { ExitFeed, RegistryStats } from "../core/registry.ts";
import type { ExitRecord } from "../kernel/exit-record.ts";
import { CALL_AUTH, type CallAuth, callerWith } from "../rpc/principal.ts";
import type { FleetInfoState } from "../rpc/service.ts";
import type { TaskstatsSource } from "../sources/source.ts";
import { createRpcMetrics } from "./_metrics-rpc.ts";
import { processRegistry } from "./_metrics-process.ts";
import { counterFrom, gaugeFrom } from "./_metrics-read.ts";
import { addSourceSeries, countingFeed } from "./_metrics-source.ts";

/** The connection caps a runtime adapter enforces, as it reports its refusals (TaskwireServer.refusedConnection). */
export type ConnectionLimit =
  | "max-connections"
  | "max-connections-per-address"
  | "h2-max-resets-per-second"
  | "h2-max-resets-per-second-per-address";

/** What the series are read from, at scrape time. */
export interface MetricsInputs {
  readonly source: TaskstatsSource;
  /** The listener registry's totals (called per scrape, never per record). */
  readonly stats: () => RegistryStats;
  /** Refusals so far by kind (the audit log's counts). */
  readonly authFailures: () => AuditLog["counts"];
  /** Connections a runtime adapter refused so far, by the cap that refused them. */
  readonly connectionRefusals?: () => Readonly<Record<ConnectionLimit, number>>;
  /** The event loop's busy share, 0..1. */
  readonly loopUtilization: () => number;
  readonly version: string;
  /**
   * How long one rendered exposition serves every scrape, ms (default
   * DEFAULT_METRICS_CACHE_MS; 0: render per scrape). Scrapes that come
   * while it renders share that render, so any scrape rate costs at most one
   * render per period.
   */
  readonly cacheMs?: number | undefined;
  /** The fleet publisher's counters (src/fleet), when the server publishes to NATS. */
  readonly fleet?: (() => FleetCounters) | undefined;
}

/** What /metrics shows of the fleet publisher. */
export type FleetCounters = Pick<
  FleetInfoState,
  "connected" | "published" | "pending" | "queued" | "dropped" | "retries" | "failing" | "failures" | "unsent"
>;

/** One exposition: its text and content type. */
export interface Exposition {
  readonly body: string;
  readonly contentType: string;
}

/** A server's metrics. */
export interface ServerMetrics {
  /** The source as the listener registry should see it: the same, with each record and kernel drop counted per CPU. */
  readonly feed: ExitFeed<ExitRecord>;
  /** The router interceptor counting RPCs. */
  readonly interceptor: Interceptor;
  /** Everything, in the Prometheus text format (0.0.4). */
  render(): Promise<Exposition>;
}

/**
 * The /metrics response for a caller: the exposition for one with the
 * "metrics" role; else 401 (not authenticated) or 403 (role missing), each
 * audited as an RPC refusal is.
 */
export async function metricsResponse(render: () => Promise<Exposition>, auth: CallAuth): Promise<Response> {
  try {
    callerWith({ values: createContextValues().set(CALL_AUTH, auth) }, "metrics", "/metrics");
  } catch (err) {
    const message = (err as Error).message;
    if (!(err instanceof UnauthenticatedError)) return text(`${message}\n`, 403);
    const hint = 'needs a bearer token or client certificate of a principal with the "metrics" role';
    return text(`${message}: /metrics ${hint}\n`, 401, { "WWW-Authenticate": 'Bearer realm="taskwire"' });
  }
  const { body, contentType } = await render();
  return new Response(body, { headers: { "Content-Type": contentType, "Cache-Control": "no-store" } });
}

const text = (body: string, status: number, headers: Record<string, string> = {}) =>
  new Response(body, { status, headers: { "Content-Type": "text/plain; charset=utf-8", ...headers } });

/** The Prometheus text format's content type (what prom-client writes). */
export const EXPOSITION_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

/**
 * How long one exposition is served, ms: rendering reads every series (a few
 * ms), and 868 scrapes a second once raised another caller's GetInfo median
 * from 4.6 to 40 ms. Prometheus scrapes every 15 s or more; a second of
 * staleness is nothing to it.
 */
export const DEFAULT_METRICS_CACHE_MS = 1000;

/** Makes a server's metrics over `inputs`. */
export function createServerMetrics(inputs: MetricsInputs): ServerMetrics {
  const registry = new Registry();
  const processWide = processRegistry(); // made now, so its event-loop and CPU series have history by the first scrape
  const perCpu = countingFeed(inputs.source);
  addSourceSeries(registry, inputs.source, perCpu);
  addRegistrySeries(registry, inputs.stats);
  addServerSeries(registry, inputs);
  if (inputs.fleet !== undefined) addFleetSeries(registry, inputs.fleet);
  const interceptor = createRpcMetrics(registry);
  const renders = new Counter({
    name: "taskwire_metrics_renders_total",
    help: "Expositions rendered for /metrics (scrapes within a render's cache period share it)",
    registers: [registry],
  });
  return {
    feed: perCpu.feed,
    interceptor,
    render: cached(inputs.cacheMs ?? DEFAULT_METRICS_CACHE_MS, async () => {
      renders.inc();
      return {
        body: `${await registry.metrics()}\n${await processWide.metrics()}`,
        contentType: EXPOSITION_CONTENT_TYPE,
      };
    }),
  };
}

// One promise of `make` for `ms` after it started, shared by every caller meanwhile; a failed one is not kept.
function cached<T>(ms: number, make: () => Promise<T>): () => Promise<T> {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`cacheMs must be >= 0, got ${ms}`);
  let kept: { at: number; value: Promise<T> } | undefined;
  return () => {
    const now = performance.now();
    if (kept !== undefined && now - kept.at < ms) return kept.value;
    const value = make();
    const entry = { at: now, value };
    kept = entry;
    value.catch(() => {
      if (kept === entry) kept = undefined;
    });
    return value;
  };
}

function addRegistrySeries(registry: PromRegistry, stats: () => RegistryStats): void {
  const gauge = (name: string, help: string, read: (s: RegistryStats) => number) =>
    gaugeFrom(registry, name, help, () => read(stats()));
  gauge("taskwire_listeners", "Listeners registered.", (s) => s.listeners);
  gauge("taskwire_streams", "SubscribeExits streams open.", (s) => s.streams);
  gauge("taskwire_queued_events", "Events queued, over all listeners.", (s) => s.queued);
  gauge("taskwire_queue_depth_max_events", "Events in the deepest listener queue.", (s) => s.deepestQueue);
  gauge(
    "taskwire_memory_used_bytes",
    "Bytes held against the memory budget (queued and retained events, in-flight batches, listeners).",
    (s) => s.memoryUsed,
  );
  gauge(
    "taskwire_memory_slabs_bytes",
    "Of taskwire_memory_used_bytes, what events leave unpaid of the shared slabs they keep alive, counted once a " +
      "second (charged even past the budget).",
    (s) => s.memorySlabs,
  );
  gauge(
    "taskwire_memory_budget_bytes",
    "The memory budget, bytes (+Inf: unlimited).",
    (s) => (s.memoryBudget >= Number.MAX_SAFE_INTEGER ? Infinity : s.memoryBudget),
  );
  counterFrom(
    registry,
    "taskwire_stalled_streams_total",
    "SubscribeExits streams ended because their clients took no batch for a lease while the memory budget was past " +
      "its limit and their principal held more than its fair share (the batch each held is given back).",
    { read: () => stats().stalledStreams },
  );
  new Counter({
    name: "taskwire_subscriber_drops_total",
    help: "Events listeners lost (each listener counts its own), by reason: subscriber_overflow (its queue was " +
      "full), memory_budget (the server's memory budget had no room for them), kernel_overflow (the kernel dropped them), source_error (the server could not decode or pass them on), " +
      "retention (a resume asked for events no longer kept), restart.",
    labelNames: ["reason"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(stats().lost)) this.inc({ reason: reason.replaceAll("-", "_") }, n);
    },
  });
}

function addServerSeries(registry: PromRegistry, inputs: MetricsInputs): void {
  new Counter({
    name: "taskwire_auth_failures_total",
    help: "Refused callers, by kind: unauthenticated (no or bad credentials) or permission_denied (a role missing).",
    labelNames: ["kind"] as const,
    registers: [registry],
    collect() {
      const c = inputs.authFailures();
      this.reset();
      this.inc({ kind: "unauthenticated" }, c.unauthenticated);
      this.inc({ kind: "permission_denied" }, c["permission-denied"]);
    },
  });
  new Counter({
    name: "taskwire_connections_refused_total",
    help: "Connections closed (Node), by the cap that refused them: max_connections (--max-connections) or " +
      "max_connections_per_address (--max-connections-per-address), as they were accepted; " +
      "h2_max_resets_per_second (--h2-max-resets-per-second), an HTTP/2 connection resetting streams too fast; " +
      "h2_max_resets_per_second_per_address (--h2-max-resets-per-second-per-address), the connections from one " +
      "address resetting streams too fast together.",
    labelNames: ["limit"] as const,
    registers: [registry],
    collect() {
      const c = inputs.connectionRefusals?.();
      this.reset();
      this.inc({ limit: "max_connections" }, c?.["max-connections"] ?? 0);
      this.inc({ limit: "max_connections_per_address" }, c?.["max-connections-per-address"] ?? 0);
      this.inc({ limit: "h2_max_resets_per_second" }, c?.["h2-max-resets-per-second"] ?? 0);
      this.inc({ limit: "h2_max_resets_per_second_per_address" }, c?.["h2-max-resets-per-second-per-address"] ?? 0);
    },
  });
  gaugeFrom(
    registry,
    "taskwire_event_loop_utilization_ratio",
    "Share of the time since it was last read (100 ms at least: a stream batch or a scrape reads it) the main event loop was busy (0 to 1).",
    inputs.loopUtilization,
  );
  new Gauge({
    name: "taskwire_build_info",
    help: "Always 1; the labels name the taskwire version and the source.",
    labelNames: ["version", "source"] as const,
    registers: [registry],
  }).set({ version: inputs.version, source: inputs.source.name }, 1);
}

function addFleetSeries(registry: PromRegistry, fleet: () => FleetCounters): void {
  gaugeFrom(
    registry,
    "taskwire_fleet_connected",
    "1 while the fleet publisher is connected to NATS, else 0.",
    () => fleet().connected ? 1 : 0,
  );
  const total = (name: string, help: string, read: (c: FleetCounters) => number) =>
    counterFrom(registry, name, help, { read: () => read(fleet()) });
  total(
    "taskwire_fleet_published_total",
    "Events (exits and loss markers) in the messages JetStream acknowledged.",
    (c) => c.published,
  );
  total(
    "taskwire_fleet_dropped_total",
    "Exits the fleet publisher's queue dropped (published as loss markers).",
    (c) => c.dropped,
  );
  total(
    "taskwire_fleet_unsent_total",
    "Seqs never published: their loss marker fit in no message NATS takes (max_payload or the stream's max message " +
      "size below about 100 bytes). Consumers report them lost.",
    (c) => c.unsent,
  );
  total(
    "taskwire_fleet_retries_total",
    "JetStream publishes retried after a failure or a missing ack.",
    (c) => c.retries,
  );
  new Gauge({
    name: "taskwire_fleet_publish_failing",
    help:
      "1 while the fleet publisher's publishes fail, labelled with why (GetInfo's fleet.last_error says what to do).",
    labelNames: ["reason"] as const,
    registers: [registry],
    collect() {
      const why = fleet().failing;
      this.reset();
      this.set({ reason: why === "" ? "none" : why }, why === "" ? 0 : 1);
    },
  });
  new Counter({
    name: "taskwire_fleet_publish_failures_total",
    help: "JetStream publishes that failed, by why (each is retried).",
    labelNames: ["reason"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(fleet().failures)) this.inc({ reason }, n);
    },
  });
  gaugeFrom(
    registry,
    "taskwire_fleet_pending_messages",
    "Messages published and not yet acknowledged.",
    () => fleet().pending,
  );
  gaugeFrom(
    registry,
    "taskwire_fleet_queued_events",
    "Events waiting in the fleet publisher's queue.",
    () => fleet().queued,
  );
}
