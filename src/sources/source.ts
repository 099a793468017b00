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
}

/** No live task has this id (the kernel's ESRCH). */
export class TaskNotFoundError extends Error {
  override readonly name = "TaskNotFoundError";
  readonly id: number;
  readonly kind: "pid" | "tgid";
  constructor(kind: "pid" | "tgid", id: number) {
    super(`no live task with ${kind} ${id}`);
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
