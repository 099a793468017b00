/**
 * GetCgroupStats: the tasks of one cgroup by state, as CGROUPSTATS_CMD_GET
 * (getdelays -C) reports them. Admit the caller (role "read"), validate the
 * path's form, then let the source resolve it inside the cgroup filesystem
 * and count: the kernel for a v1 hierarchy, cgroup.threads and /proc for
 * cgroup v2 (where the kernel answers EINVAL).
 */
import { create } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { quote } from "../core/errors.ts";
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

/** Answers GetCgroupStats; every failure is a ConnectError with an ErrorDetail. */
export async function getCgroupStats(
  deps: ServiceDeps,
  req: GetCgroupStatsRequest,
  ctx: Pick<HandlerContext, "values">,
): Promise<GetCgroupStatsResponse> {
  try {
    const who = callerWith(ctx, "read", "GetCgroupStats");
    deps.admission.call(who.id);
    refuseUidLimited(who);
    return toResponse(await deps.source.cgroupStats(requirePath(req.path)));
  } catch (err) {
    throw toConnectError(err);
  }
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
