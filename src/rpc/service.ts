/**
 * The TaskStats service: its methods over a source and a listener
 * registry passed in. Every method validates the whole request first and
 * only then acts, so a rejected request creates, changes and leaks nothing.
 * Domain errors become Connect codes in errors.ts, nowhere else.
 */
import { refuseIfOverCalls } from "./held-call.ts";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Principal, Role } from "../core/principal.ts";
import {
  FleetPublisherInfoSchema,
  GetInfoResponseSchema,
  type ListenerInfoSchema,
  OverflowPolicy,
  type TaskStats,
} from "../gen/taskwire/v1/taskstats_pb.ts";
import type { TaskStats as TaskStatsRecord } from "../gen/taskwire/kernel/v1/taskstats_pb.ts";
import { TaskNotFoundError } from "../sources/source.ts";
import { toPolicy } from "./convert.ts";
import { InvalidRequestError, pastDeadline, throwIfPastDeadline, toConnectError } from "./errors.ts";
import { callerWith, maySee, ownerFilter } from "./principal.ts";
import type { ServerListener, ServerRegistry } from "./stream.ts";
import { ownership, requireId, requireMask, type ServiceDeps } from "./requests.ts";
import { type CgroupDeps, createGetCgroupStats } from "./cgroup-stats.ts";
import { subscribeExits } from "./subscribe.ts";

export type { ServiceDeps } from "./requests.ts";

/** GetInfo's view of the fleet publisher (src/fleet), when the server publishes to NATS. */
export interface FleetInfoDeps {
  readonly fleet?: (() => FleetInfoState) | undefined;
}

/** The fleet publisher's state (src/fleet), as GetInfo and /metrics show it. */
export interface FleetInfoState {
  readonly connected: boolean;
  /** Events (exits and loss markers) in the messages JetStream acknowledged. */
  readonly published: number;
  /** Messages sent and not yet acknowledged (in the window or waiting to be retried). */
  readonly pending: number;
  /** Events waiting in the publisher's queue. */
  readonly queued: number;
  /** Exits the publisher's queue dropped (NATS slow or down); each reached the stream inside a loss marker. */
  readonly dropped: number;
  /** Publishes retried after a failure or a missing ack. */
  readonly retries: number;
  readonly stream: string;
  readonly subjectPrefix: string;
  /** This host's subject token. */
  readonly host: string;
  /**
   * Why publishes fail, with NATS's words and what to do ("" since the last success): a cause NATS named is kept
   * over the timeouts that follow it in the same outage.
   */
  readonly lastError: string;
  /** The kind of that failure (permission, sealed, no-stream, timeout, refused), "" while publishes are acked. */
  readonly failing: string;
  /** Since when publishes fail, ms since the epoch (0 while they are acked). */
  readonly failingSince: number;
  /** Failed publishes so far, per kind. */
  readonly failures: Readonly<Record<string, number>>;
  /**
   * Seqs whose loss marker NATS refused for its size (a limit below a marker's message), not published: a consumer
   * reports them lost as a gap. They are counted in `dropped` too when the publisher dropped them.
   */
  readonly unsent: number;
}

/** The caller of a unary method, checked for `role` and admitted under its call rate, if its deadline is not up. */
function admit(
  deps: ServiceDeps,
  ctx: Pick<HandlerContext, "values" | "signal" | "timeoutMs">,
  role: Role,
  method: string,
): Principal {
  const who = callerWith(ctx, role, method);
  throwIfPastDeadline(ctx);
  refuseIfOverCalls(ctx);
  deps.admission.call(who.id);
  return who;
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
export function createTaskStatsService(deps: ServiceDeps & CgroupDeps & FleetInfoDeps): ServiceImpl<typeof TaskStats> {
  const { source, registry } = deps;
  const getCgroupStats = createGetCgroupStats(deps);
  return {
    getPid: (req, ctx) =>
      guard(async () => {
        const who = admit(deps, ctx, "read", "GetPid");
        const pid = requireId(req.pid, "pid");
        return { pid: req.pid, stats: visible(who, await source.getPid(pid), "pid", pid) };
      }),
    getTgid: (req, ctx) =>
      guard(async () => {
        const who = admit(deps, ctx, "read", "GetTgid");
        const tgid = requireId(req.tgid, "tgid");
        return { tgid: req.tgid, stats: await visibleGroup(who, source, tgid) };
      }),
    register: (req, ctx) =>
      guard(async () => {
        const who = admit(deps, ctx, "subscribe", "Register");
        const cpus = requireMask(req.cpumask, deps, "cpumask");
        const policy = toPolicy(req.overflow);
        const existing = req.listenerId === "" ? undefined : registry.get(req.listenerId, ownerFilter(who));
        let listener: ServerListener;
        let undo: (why: string) => void;
        if (existing === undefined) {
          listener = registry.create(cpus, { buffer: req.buffer, policy, ephemeral: false, ...ownership(who) });
          undo = (why) => registry.remove(listener, why);
        } else {
          listener = existing;
          const had = new Set(registry.cpusOf(listener));
          registry.add(listener, cpus);
          undo = () => registry.removeCpus(listener, cpus.filter((c) => !had.has(c)));
        }
        // Answer once the kernel is listening on these CPUs; if it refused, or the caller's deadline passed meanwhile
        // (its client hears of no listener), take back what was added.
        await source.synced().catch((err: unknown) => {
          undo("the kernel did not register its CPUs");
          throw err;
        });
        const late = pastDeadline(ctx);
        if (late !== undefined) {
          undo("its Register's deadline passed before the answer");
          throw late;
        }
        return {
          listenerId: listener.id,
          cpumask: registry.cpumaskOf(listener),
          buffer: listener.queue.capacity,
          leaseMs: registry.limits.leaseMs,
        };
      }),
    deregister: (req, ctx) =>
      guard(() => {
        const who = admit(deps, ctx, "subscribe", "Deregister");
        const listener = registry.get(requireListenerId(req.listenerId), ownerFilter(who));
        const cpus = requireMask(req.cpumask, deps, "cpumask");
        const left = registry.removeCpus(listener, cpus);
        return { cpumask: left.length === 0 ? "" : registry.cpumaskOf(listener) };
      }),
    subscribeExits: (req, ctx) => subscribeExits(deps, req, ctx),
    getInfo: (req, ctx) =>
      guard(() => {
        const who = admit(deps, ctx, "read", "GetInfo");
        return getInfo(deps, who, req.listeners);
      }),
    getCgroupStats: (req, ctx) => getCgroupStats(req, ctx),
  };
}

// A task a uid-limited principal may not see is answered exactly as a task that does not exist.
function visible(who: Principal, stats: TaskStatsRecord, kind: "pid" | "tgid", id: number): TaskStatsRecord {
  if (!maySee(who, stats.acUid)) throw new TaskNotFoundError(kind, id);
  return stats;
}

/**
 * A thread group's stats for `who`. The kernel's group record carries no owner: fill_stats_for_tgid() copies
 * signal->stats and adds each live thread's delays and switches, so ac_uid is left 0 (root's uid) whoever owns the
 * group. A uid-limited principal is judged by the group's leader instead (TASKSTATS_CMD_GET by PID = tgid, which must
 * name a leader; a leader that exited before its threads stays a zombie the kernel still answers for), read before
 * and after the group: the same uid and start both times, or the pid was reused in between and the group is
 * NOT_FOUND, as it is when the leader cannot be read at all.
 */
async function visibleGroup(who: Principal, source: ServiceDeps["source"], tgid: number): Promise<TaskStatsRecord> {
  if (who.uids === undefined) return source.getTgid(tgid);
  const leader = async () => {
    try {
      return visible(who, await source.getPid(tgid), "tgid", tgid);
    } catch (err) {
      throw err instanceof TaskNotFoundError ? new TaskNotFoundError("tgid", tgid) : err;
    }
  };
  const before = await leader();
  // A thread's id is no group's: the kernel answers TGID = a thread id with that thread's whole group, whose leader
  // may run as another uid (per-thread credentials, setresuid in one thread).
  if (before.acTgid !== tgid) throw new TaskNotFoundError("tgid", tgid);
  const stats = await source.getTgid(tgid);
  const after = await leader();
  if (!sameLeader(before, after)) throw new TaskNotFoundError("tgid", tgid);
  return stats;
}

/**
 * Whether two reads of a group's leader read the same task: the same uid, and
 * the same start but for a second. The kernel does not keep a task's start as
 * a wall-clock time: bacct_add_tsk() works ac_btime out on each read as the
 * real time's whole seconds less the whole seconds the task has run, and the
 * two clocks' seconds tick over at different moments, so two reads a moment
 * apart can differ by one (a uid-limited GetTgid was refused NOT_FOUND for a
 * live group once in a CI run). A pid reused in between starts after the
 * first read; within its second it is not told apart, as it never was.
 */
export function sameLeader(
  before: Pick<TaskStatsRecord, "acUid" | "acBtime" | "acBtime64">,
  after: Pick<TaskStatsRecord, "acUid" | "acBtime" | "acBtime64">,
): boolean {
  const apart = (a: number | bigint | undefined, b: number | bigint | undefined) =>
    a !== b && (a === undefined || b === undefined || Math.abs(Number(a) - Number(b)) > 1);
  return after.acUid === before.acUid && !apart(after.acBtime64, before.acBtime64) &&
    !apart(after.acBtime, before.acBtime);
}

function getInfo(deps: ServiceDeps & FleetInfoDeps, who: Principal, listeners: boolean) {
  const { source, registry } = deps;
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
    sourceDiscards: BigInt(info.discarded),
    subscriberDrops: BigInt(stats.lost["subscriber-overflow"]),
    memoryBudgetDrops: BigInt(stats.lost["memory-budget"]),
    serverVersion: deps.version,
    socketBuffer: info.socketBuffer,
    maxBuffer: limits.maxBuffer,
    defaultBuffer: limits.defaultBuffer,
    leaseMs: limits.leaseMs,
    listenerDetails: listeners ? registry.listeners(ownerFilter(who)).map((l) => listenerInfo(registry, l)) : [],
    principal: who.id,
    roles: [...who.roles],
    uidLimited: who.uids !== undefined,
    uids: [...(who.uids ?? [])].sort((a, b) => a - b),
    // Admins only: what the process may do (all of root's, say) tells an attacker what taking it over would give.
    capabilities: who.roles.has("admin") ? [...(deps.capabilities?.() ?? [])] : [],
    memoryBudget: BigInt(stats.memoryBudget),
    memoryUsed: BigInt(stats.memoryUsed),
    ...(deps.host && { host: deps.host }),
    ...(deps.fleet && { fleet: fleetInfo(deps.fleet(), who) }),
  });
}

// The last publish error may name NATS servers and accounts: admins only.
function fleetInfo(s: FleetInfoState, who: Principal) {
  return create(FleetPublisherInfoSchema, {
    connected: s.connected,
    stream: s.stream,
    subjectPrefix: s.subjectPrefix,
    host: s.host,
    published: BigInt(s.published),
    pending: BigInt(s.pending),
    queued: BigInt(s.queued),
    dropped: BigInt(s.dropped),
    retries: BigInt(s.retries),
    unsent: BigInt(s.unsent),
    lastError: who.roles.has("admin") ? s.lastError : "",
  });
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
    lostMemoryBudget: BigInt(l.lost["memory-budget"]),
    lostKernelOverflow: BigInt(l.lost["kernel-overflow"]),
    lostSourceError: BigInt(l.lost["source-error"]),
    lostRetention: BigInt(l.lost.retention),
    lostRestart: BigInt(l.lost.restart),
    eventsPerSecond: l.rate,
    owner: l.owner,
    memoryBytes: BigInt(l.memoryBytes),
  };
}
