/**
 * The source interface: where exit records and on-demand stats come from.
 * Implementations: sources/sim (the simulated kernel) and sources/netlink
 * (the real one). A source pushes records into a sink and is told which CPUs
 * have listeners, so it asks the kernel only for those (an exit on a CPU
 * without listeners costs the kernel nothing).
 */
import type { TaskStats } from "../gen/taskwire/kernel/v1/taskstats_pb.ts";
import type { PossibleCpus } from "../kernel/cpulist.ts";
import type { ExitRecord } from "../kernel/exit-record.ts";

/** Receives what a source produces, in order, per CPU. */
export interface ExitSink {
  /** One exit record for the listeners of `record.cpu`. */
  exit(record: ExitRecord): void;
  /** The kernel dropped `count` records for `cpu` before they were read. */
  kernelLoss(cpu: number, count: number): void;
  /**
   * The source read `count` records for `cpu` that it could not decode or
   * pass on (a malformed message, or `exit` threw); it logs why.
   */
  sourceLoss(cpu: number, count: number): void;
}

/** Facts about a source for GetInfo. */
export interface SourceInfo {
  readonly source: "netlink" | "sim";
  readonly kernelRelease: string;
  readonly taskstatsVersion: number;
  readonly taskstatsSize: number;
  readonly delayacct: boolean;
  /** Receive buffer per CPU socket in bytes (0 where there is none). */
  readonly socketBuffer: number;
  /** Records the kernel dropped before the source read them. */
  readonly kernelDrops: number;
  /** Exit records produced so far. */
  readonly records: number;
  /** Times the kernel reported a full receive buffer (ENOBUFS). */
  readonly overruns: number;
  /** Records read but not decoded or passed on (each reported through `sourceLoss`). */
  readonly discarded: number;
  /**
   * The boot id of a kernel that is not this machine's (the sim's, new at each start: its pids and ac_btime start
   * again with it); unset for this machine's kernel, whose boot id the server reads.
   */
  readonly bootId?: string;
}

/** A producer of taskstats: real kernel or simulation. */
export interface TaskstatsSource {
  readonly name: "netlink" | "sim";
  /** cpu_possible_mask: the CPUs a cpumask may name. */
  readonly possible: PossibleCpus;
  info(): SourceInfo;
  /** Stats of a live thread. Rejects with TaskNotFoundError when there is none. */
  getPid(pid: number): Promise<TaskStats>;
  /** Stats of a thread group, past and present threads. Rejects with TaskNotFoundError. */
  getTgid(tgid: number): Promise<TaskStats>;
  /** Starts producing exit records into `sink`. Called once. */
  start(sink: ExitSink): void;
  /** CPUs that gained their first listener (`on`) or lost their last. */
  watch(cpus: readonly number[], on: boolean): void;
  /** Resolves once every watch change so far is in effect (the kernel is listening); rejects if one failed. */
  synced(): Promise<void>;
  /** Stops producing and releases kernel resources. */
  close(): Promise<void>;
  /**
   * Task counts by state of the cgroup directory at `path` (CGROUPSTATS_CMD_GET,
   * or cgroup.threads and /proc on cgroup v2). Rejects with CgroupPathError,
   * CgroupNotFoundError, CgroupTooLargeError, or SourceUnsupportedError; with
   * the signal's reason once `options.signal` aborts (the caller left, or its
   * time ran out).
   */
  cgroupStats(path: string, options?: CgroupStatsOptions): Promise<CgroupStats>;
  /**
   * CPU time, seconds, the thread reading the kernel has used (user and
   * system), where a source has one (netlink's reader worker); undefined
   * until it is known. Read on demand (a scrape), never per record.
   */
  readerCpuSeconds?(): number | undefined;
}

/** No live task has this id (the kernel's ESRCH); `where`, said after the id, names the source's tasks ("in ..."). */
export class TaskNotFoundError extends Error {
  override readonly name = "TaskNotFoundError";
  readonly id: number;
  readonly kind: "pid" | "tgid";
  constructor(kind: "pid" | "tgid", id: number, where?: string) {
    super(`no live task with ${kind} ${id}${where === undefined ? "" : ` ${where}`}`);
    this.kind = kind;
    this.id = id;
  }
}

/** The kernel refused for lack of privilege (EPERM/EACCES). */
export class SourcePermissionError extends Error {
  override readonly name = "SourcePermissionError";
}

/** The source cannot serve at all (not Linux, family absent, closed). */
export class SourceUnavailableError extends Error {
  override readonly name = "SourceUnavailableError";
}

/** Where cgroup hierarchies are mounted (v1 hierarchies and cgroup2 alike); cgroup paths must lie under it. */
export const CGROUP_ROOT = "/sys/fs/cgroup";

/** Longest cgroup path accepted, bytes (the kernel's PATH_MAX less its NUL). */
export const CGROUP_PATH_MAX = 4095;

/** How a cgroupStats call may be cut short. */
export interface CgroupStatsOptions {
  /** Stops the count when it aborts. */
  readonly signal?: AbortSignal | undefined;
}

/** Tasks of one cgroup by state: struct cgroupstats (linux/cgroupstats.h). */
export interface CgroupStats {
  /** The cgroup directory counted (symlinks resolved). */
  readonly path: string;
  /** "kernel": CGROUPSTATS_CMD_GET (cgroup v1); "procfs": cgroup.threads and /proc/<tid>/stat (cgroup v2). */
  readonly method: "kernel" | "procfs";
  readonly sleeping: number;
  readonly running: number;
  readonly stopped: number;
  readonly uninterruptible: number;
  /** From the kernel only; undefined with "procfs" (/proc cannot tell I/O waiters from other sleepers). */
  readonly ioWait?: number;
}

/** A cgroup path that is not a cgroup directory under the cgroup filesystem (the message says what to pass). */
export class CgroupPathError extends Error {
  override readonly name = "CgroupPathError";
}

/** No cgroup directory at this path (under the cgroup filesystem). */
export class CgroupNotFoundError extends Error {
  override readonly name = "CgroupNotFoundError";
}

/** The cgroup holds more threads than the server counts in one call. */
export class CgroupTooLargeError extends Error {
  override readonly name = "CgroupTooLargeError";
  readonly limit: number;
  constructor(message: string, limit: number) {
    super(message);
    this.limit = limit;
  }
}

/** This source lacks the feature asked for (the sim source has no cgroups). */
export class SourceUnsupportedError extends Error {
  override readonly name = "SourceUnsupportedError";
}
