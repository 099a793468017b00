/**
 * The TaskStats service: request validation and the six methods, over a
 * source and a listener registry passed in. Domain errors become Connect
 * codes here and nowhere else.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { GetInfoResponseSchema, ListenerInfoSchema, OverflowPolicy, TaskStats, type SubscribeExitsRequest } from "../gen/taskwire/v1/taskstats_pb.ts";
import { parseCpumask } from "../kernel/cpulist.ts";
import type { TaskstatsSource } from "../sources/source.ts";
import { toPolicy } from "./convert.ts";
import { InvalidRequestError, OutOfRangeError, toConnectError } from "./errors.ts";
import type { StreamItem } from "../core/retention.ts";
import type { Listener } from "../core/listener.ts";
import type { ListenerRegistry } from "../core/registry.ts";
import { compileFieldMask, compileFilter, type Projection } from "./projection.ts";
import { streamListener } from "./stream.ts";

/** What the service needs. */
export interface ServiceDeps {
  readonly source: TaskstatsSource;
  readonly registry: ListenerRegistry;
  readonly version: string;
}

const MIN_HEARTBEAT_MS = 100;
const MAX_HEARTBEAT_MS = 600_000;

function requireId(value: number, what: "pid" | "tgid"): number {
  if (value === 0) throw new InvalidRequestError(`${what} is 0; pass the ${what === "pid" ? "thread id" : "process id"} of a live task (>= 1)`);
  return value;
}

function requireMask(text: string, deps: ServiceDeps, field: string): number[] {
  if (text === "") throw new InvalidRequestError(`${field} is empty; name CPUs in cpulist syntax, e.g. "0-3,5" (possible CPUs: ${deps.source.possible.list})`);
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
        let listener: Listener;
        let undo: () => void;
        if (req.listenerId === "") {
          listener = registry.create(cpus, { buffer: req.buffer, policy: toPolicy(req.overflow), ephemeral: false });
          undo = () => registry.remove(listener, "the kernel did not register its CPUs");
        } else {
          listener = registry.get(req.listenerId);
          const had = new Set(registry.cpusOf(listener));
          registry.add(listener, cpus);
          undo = () => registry.removeCpus(listener, cpus.filter((c) => !had.has(c)));
        }
        // Answer once the kernel is listening on these CPUs; if it refused, take back what was added.
        await source.synced().catch((err: unknown) => {
          undo();
          throw err;
        });
        return { listenerId: listener.id, cpumask: registry.cpumaskOf(listener), buffer: listener.queue.capacity, leaseMs: registry.limits.leaseMs };
      }),
    deregister: (req) =>
      guard(() => {
        const listener = registry.get(requireListenerId(req.listenerId));
        const left = registry.removeCpus(listener, requireMask(req.cpumask, deps, "cpumask"));
        return { cpumask: left.length === 0 ? "" : registry.cpumaskOf(listener) };
      }),
    subscribeExits: (req, ctx) => subscribe(deps, req, ctx.signal, !/json/i.test(ctx.requestHeader.get("content-type") ?? "")),
    getInfo: (req) =>
      guard(() => {
        const info = source.info();
        const stats = registry.stats();
        const { limits } = registry;
        return create(GetInfoResponseSchema, {
          source: info.source, possibleCpus: source.possible.list, taskstatsVersion: info.taskstatsVersion,
          taskstatsSize: info.taskstatsSize, kernelRelease: info.kernelRelease, delayacct: info.delayacct,
          watchedCpus: stats.watchedCpus, listeners: stats.listeners, streams: stats.streams,
          records: BigInt(info.records), kernelDrops: BigInt(info.kernelDrops), kernelOverruns: BigInt(info.overruns),
          subscriberDrops: BigInt(stats.lost["subscriber-overflow"]), serverVersion: deps.version,
          socketBuffer: info.socketBuffer, maxBuffer: limits.maxBuffer, defaultBuffer: limits.defaultBuffer, leaseMs: limits.leaseMs,
          listenerDetails: req.listeners ? [...registry.listeners()].map((l) => listenerInfo(registry, l)) : [],
        });
      }),
  };
}

function resume(listener: Listener, afterSeq: bigint): StreamItem[] {
  try {
    return listener.resumeAfter(Number(afterSeq));
  } catch (err) {
    if (err instanceof RangeError) throw new OutOfRangeError(err.message);
    throw err;
  }
}

function listenerInfo(registry: ListenerRegistry, l: Listener): MessageInitShape<typeof ListenerInfoSchema> {
  return {
    listenerId: l.id, cpumask: registry.cpumaskOf(l), streaming: l.attached, ephemeral: l.ephemeral,
    overflow: l.queue.policy === "drop-oldest" ? OverflowPolicy.DROP_OLDEST : OverflowPolicy.DROP_NEWEST,
    queueDepth: l.queue.depth, queueCapacity: l.queue.capacity, produced: BigInt(l.produced), delivered: BigInt(l.delivered),
    lostSubscriberOverflow: BigInt(l.lost["subscriber-overflow"]), lostKernelOverflow: BigInt(l.lost["kernel-overflow"]),
    lostRetention: BigInt(l.lost.retention), lostRestart: BigInt(l.lost.restart), eventsPerSecond: l.rate,
  };
}

async function* subscribe(deps: ServiceDeps, req: SubscribeExitsRequest, signal: AbortSignal, binary: boolean) {
  const { registry } = deps;
  let listener: Listener;
  let heartbeatMs: number;
  let project: Projection;
  let replay: StreamItem[];
  try {
    project = compileFieldMask(req.fields);
    const filter = compileFilter(req.filter);
    if ((req.listenerId === "") === (req.cpumask === "")) {
      throw new InvalidRequestError("set exactly one of listener_id (a listener from Register) or cpumask (an ephemeral listener for these CPUs)");
    }
    heartbeatMs = req.heartbeatMs === 0 ? registry.limits.heartbeatMs : req.heartbeatMs;
    if (heartbeatMs < MIN_HEARTBEAT_MS || heartbeatMs > MAX_HEARTBEAT_MS) {
      throw new InvalidRequestError(`heartbeat_ms ${req.heartbeatMs} is out of range; use ${MIN_HEARTBEAT_MS}-${MAX_HEARTBEAT_MS} or 0 for the default`);
    }
    listener = req.listenerId !== ""
      ? registry.get(req.listenerId)
      : registry.create(requireMask(req.cpumask, deps, "cpumask"), { buffer: req.buffer, policy: toPolicy(req.overflow), ephemeral: true });
    listener.filter = filter;
    if (req.afterSeq !== 0n && req.listenerId === "") throw new InvalidRequestError("after_seq resumes a listener: pass listener_id with it");
    replay = req.afterSeq === 0n ? [] : resume(listener, req.afterSeq);
  } catch (err) {
    throw toConnectError(err);
  }
  const maxBatch = Math.min(req.maxBatch === 0 ? registry.limits.maxBatch : req.maxBatch, registry.limits.maxBatch);
  try {
    // The opening message means the kernel is listening; an ephemeral listener it refused is not kept.
    await deps.source.synced().catch((err: unknown) => {
      if (listener.ephemeral) registry.remove(listener, "the kernel did not register its CPUs");
      throw err;
    });
    yield* streamListener(registry, listener, { maxBatch, heartbeatMs, signal, replay, binary, ...(project && { project }) });
  } catch (err) {
    if (signal.aborted) return; // the client went away; nobody is left to tell
    throw toConnectError(err);
  }
}
