/**
 * CGROUPSTATS_CMD_GET on the netlink source's request socket: the kernel's
 * task counts of a cgroup, asked with a file descriptor of its directory.
 */
import { closeSync, constants, openSync } from "node:fs";
import { quote } from "../../core/errors.ts";
import type { CgroupDir } from "../cgroup/cgroup-path.ts";
import { CgroupNotFoundError, CgroupPathError } from "../source.ts";
import { type CgroupstatsCounts, encodeCgroupstatsGet, parseCgroupstatsNew } from "./codec.ts";
import * as K from "./constants.ts";
import { type GenlSocket, NetlinkRequestError } from "./genl-socket.ts";

/** What the request needs: the socket, the TASKSTATS family id and a fresh sequence number. */
export interface CgroupstatsRequest {
  readonly sock: GenlSocket;
  readonly family: number;
  readonly seq: number;
}

/**
 * The kernel's counts for `dir`, or undefined when the kernel does not count
 * this kind of cgroup: cgroupstats_build() answers -EINVAL for any dentry
 * not on cgroup_fs_type (v1), so for every cgroup2 directory.
 */
export function kernelCgroupstats(req: CgroupstatsRequest, dir: CgroupDir): CgroupstatsCounts | undefined {
  // cgroupstats_user_cmd() fdget()s the fd in the sending process while send() runs,
  // so it must be open here until the reply is in. O_NOFOLLOW: resolved paths have no symlink.
  const fd = openDirectory(dir.path);
  try {
    const what = `CGROUPSTATS_CMD_GET ${dir.path}`;
    const replies = req.sock.transact(encodeCgroupstatsGet(req.family, req.seq, fd), req.seq, what);
    const reply = replies.find((m) => m.type === req.family);
    const counts = reply === undefined ? undefined : parseCgroupstatsNew(reply.payload);
    // An fd fdget() cannot resolve is answered with a bare ACK (the handler returns 0).
    if (counts === undefined) throw new Error(`the kernel's reply to ${what} held no struct cgroupstats`);
    return counts;
  } catch (err) {
    if (!(err instanceof NetlinkRequestError)) throw err;
    if (err.errno === K.EINVAL && dir.fs === "cgroup2") return undefined;
    // cgroupstats_build() answers -ENOENT for a cgroup removed after it was opened.
    if (err.errno === K.ENOENT) throw new CgroupNotFoundError(`the cgroup ${quote(dir.path)} was removed`);
    throw err;
  } finally {
    closeSync(fd);
  }
}

function openDirectory(path: string): number {
  try {
    return openSync(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new CgroupNotFoundError(`the cgroup ${quote(path)} was removed`);
    if (code === "ELOOP" || code === "ENOTDIR") {
      throw new CgroupPathError(`${quote(path)} changed into a non-directory while it was opened; ask again`);
    }
    throw err;
  }
}
