/**
 * The TaskStats service: the six methods over a source and a listener
 * registry passed in. Every method validates the whole request first and
 * only then acts, so a rejected request creates, changes and leaks nothing.
 * Domain errors become Connect codes in errors.ts, nowhere else.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { OverflowPolicy as QueuePolicy } from "../core/event-queue.ts";
import { subscribe } from "../core/subscription.ts";
import {
  GetInfoResponseSchema,
  type ListenerInfoSchema,
  OverflowPolicy,
  type SubscribeExitsRequest,
  type TaskStats,
} from "../gen/taskwire/v1/taskstats_pb.ts";
import { parseCpumask } from "../kernel/cpulist.ts";
import type { TaskstatsSource } from "../sources/source.ts";
import { toPolicy } from "./convert.ts";
import { InvalidRequestError, toConnectError } from "./errors.ts";
import { compileFieldMask, compileFilter, type Projection, type RecordFilter } from "./projection.ts";
import { negotiatedCodec, type ServerListener, type ServerRegistry, streamEncoder } from "./stream.ts";

/** What the service needs. */
export interface ServiceDeps {
  readonly source: TaskstatsSource;
  readonly registry: ServerRegistry;
  readonly version: string;
  /** How long a stream lingers after a partial batch (the server's load meter); 0 when absent. */
  readonly lingerMs?: () => number;
}

const MIN_HEARTBEAT_MS = 100;
const MAX_HEARTBEAT_MS = 600_000;

function requireId(value: number, what: "pid" | "tgid"): number {
  if (value === 0) {
    throw new InvalidRequestError(
      `${what} is 0; pass the ${what === "pid" ? "thread id" : "process id"} of a live task (>= 1)`,
    );
  }
  return value;
}

function requireMask(text: string, deps: ServiceDeps, field: string): number[] {
  if (text === "") {
    throw new InvalidRequestError(
      `${field} is empty; name CPUs in cpulist syntax, e.g. "0-3,5" (possible CPUs: ${deps.source.possible.list})`,
    );
  }
  return parseCpumask(text, deps.source.possible);
}

function requireListenerId(id: string): string {
  if (id === "") throw new InvalidRequestError("listener_id is empty; pass the id Register returned");
  return id;
}

async function guard<T>(fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toConnectError(err);
  }
}

/** Builds the service implementation. */
export function createTaskStatsService(deps: ServiceDeps): ServiceImpl<typeof TaskStats> {
  const { source, registry } = deps;
  return {
    getPid: (req) => guard(async () => ({ pid: req.pid, stats: await source.getPid(requireId(req.pid, "pid")) })),
    getTgid: (req) => guard(async () => ({ tgid: req.tgid, stats: await source.getTgid(requireId(req.tgid, "tgid")) })),
    register: (req) =>
      guard(async () => {
        const cpus = requireMask(req.cpumask, deps, "cpumask");
        const policy = toPolicy(req.overflow);
        const existing = req.listenerId === "" ? undefined : registry.get(req.listenerId);
        let listener: ServerListener;
        let undo: () => void;
        if (existing === undefined) {
          listener = registry.create(cpus, { buffer: req.buffer, policy, ephemeral: false });
          undo = () => registry.remove(listener, "the kernel did not register its CPUs");
        } else {
          listener = existing;
          const had = new Set(registry.cpusOf(listener));
          registry.add(listener, cpus);
          undo = () => registry.removeCpus(listener, cpus.filter((c) => !had.has(c)));
        }
        // Answer once the kernel is listening on these CPUs; if it refused, take back what was added.
        await source.synced().catch((err: unknown) => {
          undo();
          throw err;
        });
        return {
          listenerId: listener.id,
          cpumask: registry.cpumaskOf(listener),
          buffer: listener.queue.capacity,
          leaseMs: registry.limits.leaseMs,
        };
      }),
    deregister: (req) =>
      guard(() => {
        const listener = registry.get(requireListenerId(req.listenerId));
        const cpus = requireMask(req.cpumask, deps, "cpumask");
        const left = registry.removeCpus(listener, cpus);
        return { cpumask: left.length === 0 ? "" : registry.cpumaskOf(listener) };
      }),
    subscribeExits: (req, ctx) => subscribeExits(deps, req, ctx),
    getInfo: (req) =>
      guard(() => {
        const info = source.info();
        const stats = registry.stats();
        const { limits } = registry;
        return create(GetInfoResponseSchema, {
          source: info.source,
          possibleCpus: source.possible.list,
          taskstatsVersion: info.taskstatsVersion,
          taskstatsSize: info.taskstatsSize,
          kernelRelease: info.kernelRelease,
          delayacct: info.delayacct,
          watchedCpus: stats.watchedCpus,
          listeners: stats.listeners,
          streams: stats.streams,
          records: BigInt(info.records),
          kernelDrops: BigInt(info.kernelDrops),
          kernelOverruns: BigInt(info.overruns),
          subscriberDrops: BigInt(stats.lost["subscriber-overflow"]),
          serverVersion: deps.version,
          socketBuffer: info.socketBuffer,
          maxBuffer: limits.maxBuffer,
          defaultBuffer: limits.defaultBuffer,
          leaseMs: limits.leaseMs,
          listenerDetails: req.listeners ? [...registry.listeners()].map((l) => listenerInfo(registry, l)) : [],
        });
      }),
  };
}

function listenerInfo(registry: ServerRegistry, l: ServerListener): MessageInitShape<typeof ListenerInfoSchema> {
  return {
    listenerId: l.id,
    cpumask: registry.cpumaskOf(l),
    streaming: l.attached,
    ephemeral: l.ephemeral,
    overflow: l.queue.policy === "drop-oldest" ? OverflowPolicy.DROP_OLDEST : OverflowPolicy.DROP_NEWEST,
    queueDepth: l.queue.depth,
    queueCapacity: l.queue.capacity,
    produced: BigInt(l.produced),
    delivered: BigInt(l.delivered),
    lostSubscriberOverflow: BigInt(l.lost["subscriber-overflow"]),
    lostKernelOverflow: BigInt(l.lost["kernel-overflow"]),
    lostRetention: BigInt(l.lost.retention),
    lostRestart: BigInt(l.lost.restart),
    eventsPerSecond: l.rate,
  };
}

/** A SubscribeExits request, validated: everything the stream needs, nothing done yet. */
interface SubscribePlan {
  /** The listener to stream, or undefined for a new ephemeral one on `cpus`. */
  readonly existing: ServerListener | undefined;
  readonly cpus: readonly number[];
  readonly filter: RecordFilter;
  readonly project: Projection;
  readonly heartbeatMs: number;
  readonly maxBatch: number;
  readonly afterSeq: bigint;
  readonly policy: QueuePolicy;
}

function planSubscribe(deps: ServiceDeps, req: SubscribeExitsRequest): SubscribePlan {
  const { registry } = deps;
  const project = compileFieldMask(req.fields);
  const filter = compileFilter(req.filter);
  if ((req.listenerId === "") === (req.cpumask === "")) {
    throw new InvalidRequestError(
      "set exactly one of listener_id (a listener from Register) or cpumask (an ephemeral listener for these CPUs)",
    );
  }
  if (req.afterSeq !== 0n && req.listenerId === "") {
    throw new InvalidRequestError("after_seq resumes a listener: pass listener_id with it");
  }
  const heartbeatMs = req.heartbeatMs === 0 ? registry.limits.heartbeatMs : req.heartbeatMs;
  if (heartbeatMs < MIN_HEARTBEAT_MS || heartbeatMs > MAX_HEARTBEAT_MS) {
    throw new InvalidRequestError(
      `heartbeat_ms ${req.heartbeatMs} is out of range; use ${MIN_HEARTBEAT_MS}-${MAX_HEARTBEAT_MS} or 0 for the default`,
    );
  }
  const policy = toPolicy(req.overflow);
  const existing = req.listenerId === "" ? undefined : registry.get(req.listenerId);
  const cpus = existing === undefined ? requireMask(req.cpumask, deps, "cpumask") : [];
  existing?.checkResume(req.afterSeq);
  const maxBatch = Math.min(req.maxBatch === 0 ? registry.limits.maxBatch : req.maxBatch, registry.limits.maxBatch);
  return { existing, cpus, filter, project, heartbeatMs, maxBatch, afterSeq: req.afterSeq, policy };
}

async function* subscribeExits(deps: ServiceDeps, req: SubscribeExitsRequest, ctx: HandlerContext) {
  const { registry } = deps;
  let plan: SubscribePlan;
  try {
    plan = planSubscribe(deps, req);
  } catch (err) {
    throw toConnectError(err);
  }
  const codec = negotiatedCodec(ctx);
  try {
    const listener = plan.existing ??
      registry.create(plan.cpus, { buffer: req.buffer, policy: plan.policy, ephemeral: true });
    // The opening message means the kernel is listening; an ephemeral listener it refused is not kept.
    await deps.source.synced().catch((err: unknown) => {
      if (listener.ephemeral) registry.remove(listener, "the kernel did not register its CPUs");
      throw err;
    });
    registry.get(listener.id); // still there after the wait (a Deregister may have raced it)
    listener.filter = plan.filter;
    const replay = plan.afterSeq === 0n ? [] : listener.resumeAfter(Number(plan.afterSeq));
    yield* subscribe(registry, listener, {
      maxBatch: plan.maxBatch,
      heartbeatMs: plan.heartbeatMs,
      signal: ctx.signal,
      replay,
      encode: streamEncoder(registry, listener, { codec, project: plan.project }),
      ...(deps.lingerMs && { lingerMs: deps.lingerMs }),
    });
  } catch (err) {
    if (ctx.signal.aborted) return; // the client went away; nobody is left to tell
    throw toConnectError(err);
  }
}
