/**
 * GetCgroupStats: the tasks of one cgroup by state, as CGROUPSTATS_CMD_GET
 * (getdelays -C) reports them. Admit the caller (role "read"), validate the
 * path's form, then let the source resolve it inside the cgroup filesystem
 * and count: the kernel for a v1 hierarchy, cgroup.threads and /proc for
 * cgroup v2 (where the kernel answers EINVAL).
 */
import { refuseIfOverCalls } from "./held-call.ts";
import { create } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { callerBucket } from "../core/admission.ts";
import { LimitExceededError, quote } from "../core/errors.ts";
import { KeyedCount } from "../core/keyed-count.ts";
import type { Principal } from "../core/principal.ts";
import {
  CgroupStatsMethod,
  type GetCgroupStatsRequest,
  type GetCgroupStatsResponse,
  GetCgroupStatsResponseSchema,
} from "../gen/taskwire/v1/taskstats_pb.ts";
import { CGROUP_PATH_MAX, CGROUP_ROOT, type CgroupStats } from "../sources/source.ts";
import { InvalidRequestError, toConnectError, UidLimitedError } from "./errors.ts";
import { callerWith } from "./principal.ts";
import type { ServiceDeps } from "./requests.ts";

/** How many counts may run and for how long. */
export interface CgroupCallLimits {
  /** Counts in flight at once, over all principals (--cgroup-max-concurrent). */
  readonly maxConcurrent: number;
  /** Counts in flight at once per principal (per caller bucket without authentication). */
  readonly maxPerPrincipal: number;
  /** Longest a count may take, ms (--cgroup-timeout); past it the call fails and the count stops. */
  readonly timeoutMs: number;
}

/**
 * Defaults: a v2 count of the largest cgroup counted (65536 threads at the
 * 0.02-0.04 ms a /proc read took here) takes 1.3-2.6 s of the event loop,
 * in 1 ms slices; while other calls are served it gets about half the loop,
 * so the time limit leaves it twice that and more. Two counts at once still
 * leave the loop to everyone else between slices.
 */
export const DEFAULT_CGROUP_CALLS: Readonly<CgroupCallLimits> = Object.freeze({
  maxConcurrent: 2,
  maxPerPrincipal: 1,
  timeoutMs: 10_000,
});

/** What GetCgroupStats needs beyond the service's deps. */
export interface CgroupDeps {
  /** Unset ones keep DEFAULT_CGROUP_CALLS. */
  readonly cgroupCalls?: Partial<CgroupCallLimits> | undefined;
}

/** The GetCgroupStats method; its limits are shared by every call to the one service. */
export type GetCgroupStats = (
  req: GetCgroupStatsRequest,
  ctx: Pick<HandlerContext, "values" | "signal">,
) => Promise<GetCgroupStatsResponse>;

/** Makes GetCgroupStats; every failure is a ConnectError with an ErrorDetail. */
export function createGetCgroupStats(deps: ServiceDeps & CgroupDeps): GetCgroupStats {
  const limits = cgroupLimits(deps.cgroupCalls);
  const gate = createCallGate(limits);
  return async (req, ctx) => {
    try {
      const who = callerWith(ctx, "read", "GetCgroupStats");
      refuseIfOverCalls(ctx);
      refuseUidLimited(who);
      const path = requirePath(req.path);
      // The counts in flight before the call rate: a refusal for the moment (the server's counts all in use, which
      // the SDK retries) must not spend a call of the caller's rate; left again below if the rate refuses.
      const leave = gate.enter(callerBucket(who.id));
      try {
        deps.admission.call(who.id);
        return toResponse(await countWithin(deps, path, ctx.signal, limits.timeoutMs));
      } finally {
        leave();
      }
    } catch (err) {
      throw toConnectError(err);
    }
  };
}

/** The limits with defaults, checked. */
export function cgroupLimits(given: Partial<CgroupCallLimits> = {}): CgroupCallLimits {
  const l = { ...DEFAULT_CGROUP_CALLS, ...given };
  for (const [k, v] of Object.entries(l)) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`cgroup call limit ${k} must be a whole number >= 1, got ${v}`);
    }
  }
  return l;
}

// The source's count, stopped when the caller leaves (ctx.signal) or the time limit passes.
async function countWithin(deps: ServiceDeps, path: string, left: AbortSignal, ms: number): Promise<CgroupStats> {
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), ms); // cleared at the end: no timer outlives its call
  try {
    return await deps.source.cgroupStats(path, { signal: AbortSignal.any([left, timeout.signal]) });
  } catch (err) {
    // The transport's reason for the abort varies (a plain Error from the HTTP/1.1 adapter): the client left.
    if (left.aborted) throw Object.assign(new Error("the client closed the request"), { name: "AbortError" });
    if (!timeout.signal.aborted) throw err;
    throw new LimitExceededError(
      `counting the cgroup took longer than ${ms} ms, the most one count may take (--cgroup-timeout); ask for a child cgroup, or retry when the host is less busy`,
    );
  } finally {
    clearTimeout(timer);
  }
}

/** A count of calls in flight, in all and per caller. */
interface CallGate {
  /** Admits one call for `caller` or throws LimitExceededError; call the returned function when it ends. */
  enter(caller: string): () => void;
}

function createCallGate(limits: CgroupCallLimits): CallGate {
  const count = new KeyedCount();
  return {
    enter(caller) {
      const n = count.of(caller);
      if (n >= limits.maxPerPrincipal) {
        throw new LimitExceededError(
          `${
            quote(caller)
          } already has ${n} GetCgroupStats call in flight, the most one caller may have; wait for it to finish, then ask again`,
        );
      }
      if (count.total >= limits.maxConcurrent) {
        throw new LimitExceededError(
          `the server is counting ${count.total} cgroups already, the most at once (--cgroup-max-concurrent); retry in a second`,
          { retryAfterMs: 1000 },
        );
      }
      return count.hold(caller);
    },
  };
}

// The counts cover every task in the cgroup whoever runs it, and the kernel cannot count
// by uid; a principal limited to its uids would learn of other users' tasks, so it is refused.
function refuseUidLimited(who: Principal): void {
  if (who.uids === undefined) return;
  throw new UidLimitedError(
    `GetCgroupStats counts every task of a cgroup, of any uid; principal ${
      quote(who.id)
    } may see only its own uids' tasks, so it may not call it (ask the server's operator for a principal without a uids limit)`,
  );
}

/** The path field checked for form only (the source checks where it leads). */
export function requirePath(path: string): string {
  const hint =
    `pass a cgroup directory under ${CGROUP_ROOT}, e.g. ${CGROUP_ROOT}/cpu/<group> (v1) or ${CGROUP_ROOT}/<group> (v2)`;
  if (path === "") throw new InvalidRequestError(`path is empty; ${hint}`);
  const bytes = new TextEncoder().encode(path).byteLength;
  if (bytes > CGROUP_PATH_MAX) {
    throw new InvalidRequestError(`path is ${bytes} bytes, longer than PATH_MAX allows (${CGROUP_PATH_MAX}); ${hint}`);
  }
  if (path.includes("\0")) throw new InvalidRequestError(`path ${quote(path)} contains a NUL character; ${hint}`);
  if (!path.startsWith("/")) throw new InvalidRequestError(`path ${quote(path)} is relative; ${hint}`);
  return path;
}

function toResponse(s: CgroupStats): GetCgroupStatsResponse {
  return create(GetCgroupStatsResponseSchema, {
    path: s.path,
    method: s.method === "kernel" ? CgroupStatsMethod.KERNEL : CgroupStatsMethod.PROCFS,
    nrSleeping: BigInt(s.sleeping),
    nrRunning: BigInt(s.running),
    nrStopped: BigInt(s.stopped),
    nrUninterruptible: BigInt(s.uninterruptible),
    ...(s.ioWait !== undefined && { nrIoWait: BigInt(s.ioWait) }),
  });
}
