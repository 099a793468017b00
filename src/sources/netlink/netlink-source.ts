/**
 * The netlink source: the real kernel's TASKSTATS family. GET requests run
 * on a dedicated socket on the calling thread (the kernel answers inside
 * send(), so they never block long); exit records come from the reader
 * worker, one socket per watched CPU.
 */
import { readFileSync } from "node:fs";
import { release } from "node:os";
import type { TaskStats } from "../../gen/taskwire/kernel/v1/taskstats_pb.ts";
import { createPossibleCpus, type PossibleCpus } from "../../kernel/cpulist.ts";
import { decodeTaskStats } from "../../kernel/taskstats-decode.ts";
import {
  type CgroupStats,
  type CgroupStatsOptions,
  type ExitSink,
  type SourceInfo,
  SourcePermissionError,
  SourceUnavailableError,
  TaskNotFoundError,
  type TaskstatsSource,
} from "../source.ts";
import { encodeTaskstatsGet, parseTaskstatsNew } from "./codec.ts";
import * as K from "./constants.ts";
import { type GenlSocket, NetlinkRequestError, openGenlSocket, resolveFamily } from "./genl-socket.ts";
import { DEFAULT_BATCH_WINDOW_MS, type Reader, startReader } from "./reader.ts";
import { kernelCgroupstats } from "./cgroupstats.ts";
import { type CgroupPathOptions, resolveCgroupDir } from "../cgroup/cgroup-path.ts";
import { countProcfs, DEFAULT_CGROUP_MAX_THREADS } from "../cgroup/procfs-counts.ts";
import { readerWorkerUrl } from "./_worker-url.ts";
import { loadSyscalls } from "../../sys/load.ts";
import { PRIVILEGES_SECTION } from "../../sys/capabilities.ts";
import { logText, taskwireLogger } from "../../log/logger.ts";
import { SyscallError, type Syscalls } from "../../sys/syscalls.ts";

/** Options of the netlink source. */
export interface NetlinkSourceOptions {
  /** Receive buffer per CPU socket in bytes (SO_RCVBUFFORCE as root). Default 32 MiB. */
  socketBuffer?: number;
  /**
   * Syscalls for the main thread's socket and the reader's doorbell (default: this runtime's FFI); the reader worker
   * always uses this runtime's FFI.
   */
  syscalls?: Syscalls;
  /** Most threads a cgroup v2 may hold to be counted from /proc in one call (default 65536). */
  cgroupMaxThreads?: number;
  /** Where cgroup paths may point (tests only; default /sys/fs/cgroup and this process's mounts). */
  cgroupPaths?: CgroupPathOptions;
  /**
   * How long the reader holds an exit record before passing it on, ms (0-100,
   * default 2): records read within one window are decoded and streamed
   * together, so the per-batch costs are shared. Once a hand-off carries more
   * than one record (they come faster than one a window), the next is at
   * least 10 ms after it (or a window, if longer); 0 hands every read over at
   * once.
   */
  batchWindowMs?: number;
}

/**
 * The netlink source, with the facts it learned at open. Like a listening
 * server, a started source keeps its process alive while it watches a CPU
 * (or a `synced()` is pending); once it watches none, or is closed, it does
 * not.
 */
export interface NetlinkSource extends TaskstatsSource {
  /** The TASKSTATS generic netlink family id on this kernel. */
  readonly family: number;
}

/** Why the real kernel cannot serve, in words that say what to do. */
export class NetlinkUnavailableError extends SourceUnavailableError {
  constructor(cause: string) {
    super(`the netlink source cannot run: ${cause}. Run with --source sim to serve the simulated kernel instead`);
  }
}

export const DEFAULT_SOCKET_BUFFER = 32 * 1024 * 1024;
export { DEFAULT_BATCH_WINDOW_MS };

function readPossible(): PossibleCpus {
  return createPossibleCpus(readFileSync("/sys/devices/system/cpu/possible", "utf8").trim());
}

function readDelayacct(): boolean {
  try {
    return readFileSync("/proc/sys/kernel/task_delayacct", "utf8").trim() === "1";
  } catch {
    return false; // kernels before 5.14 have no switch; delay accounting is then a boot option
  }
}

const GRANT_IT =
  `; run as root, or as a user holding CAP_NET_ADMIN as an ambient capability (README, "${PRIVILEGES_SECTION}")`;

function explainOpenFailure(err: unknown): string {
  if (err instanceof SyscallError) {
    if (err.errno === K.EAFNOSUPPORT || err.errno === K.EPROTONOSUPPORT) {
      return "this kernel has no generic netlink (AF_NETLINK/NETLINK_GENERIC unsupported)";
    }
    if (err.errno === K.ENOENT && err.syscall.includes("GETFAMILY")) {
      return "the TASKSTATS generic netlink family is absent (kernel built without CONFIG_TASKSTATS)";
    }
    if (err.errno === K.EPERM || err.errno === K.EACCES) {
      return `TASKSTATS_CMD_GET was refused: it needs CAP_NET_ADMIN${GRANT_IT}`;
    }
    return err.message;
  }
  // The GET that proves the source works was refused: say how to grant the capability, not only its name.
  if (err instanceof SourcePermissionError) return `${err.message}${GRANT_IT}`;
  return err instanceof Error ? err.message : String(err);
}

/** Opens the netlink source: resolves the family and proves GET works on this process. */
export async function openNetlinkSource(options: NetlinkSourceOptions = {}): Promise<NetlinkSource> {
  if (process.platform !== "linux") {
    throw new NetlinkUnavailableError(`taskstats is a Linux interface and this is ${process.platform}`);
  }
  const socketBuffer = options.socketBuffer ?? DEFAULT_SOCKET_BUFFER;
  if (!Number.isInteger(socketBuffer) || socketBuffer < 4096 || socketBuffer > 2 ** 31 - 1) {
    throw new RangeError(`socketBuffer must be 4096 bytes to 2 GiB, got ${socketBuffer}`);
  }
  const cgroups = cgroupOptions(options);
  const batchWindowMs = options.batchWindowMs ?? DEFAULT_BATCH_WINDOW_MS;
  if (!Number.isFinite(batchWindowMs) || batchWindowMs < 0 || batchWindowMs > 100) {
    throw new RangeError(`batchWindowMs must be 0 to 100 ms, got ${batchWindowMs}`);
  }
  let sys: Syscalls;
  try {
    sys = options.syscalls ?? (await loadSyscalls());
  } catch (err) {
    // A missing optional dependency says what to install; anything else is the FFI failing.
    if (err instanceof Error && err.name === "KoffiMissingError") throw new NetlinkUnavailableError(err.message);
    throw new NetlinkUnavailableError(
      `the FFI for syscalls could not load (${err instanceof Error ? err.message : String(err)})`,
    );
  }
  let sock: GenlSocket | undefined;
  try {
    sock = openGenlSocket(sys);
    const family = resolveFamily(sock, K.TASKSTATS_GENL_NAME, 1);
    const source = new _NetlinkSource(sock, family, socketBuffer, await readerWorkerUrl(), {
      cgroups,
      batchWindowMs,
      sys,
    });
    await source.getPid(process.pid); // proves GET works here, and learns the kernel's struct version and size
    return source;
  } catch (err) {
    sock?.close();
    throw new NetlinkUnavailableError(explainOpenFailure(err));
  }
}

interface CgroupOptions {
  readonly maxThreads: number;
  readonly paths: CgroupPathOptions;
}

function cgroupOptions(options: NetlinkSourceOptions): CgroupOptions {
  const maxThreads = options.cgroupMaxThreads ?? DEFAULT_CGROUP_MAX_THREADS;
  if (!Number.isInteger(maxThreads) || maxThreads < 1 || maxThreads > 4194304) {
    throw new RangeError(`cgroupMaxThreads must be 1 to 4194304 (PID_MAX_LIMIT), got ${maxThreads}`);
  }
  return { maxThreads, paths: options.cgroupPaths ?? {} };
}

class _NetlinkSource implements NetlinkSource {
  readonly name = "netlink" as const;
  readonly possible = readPossible();
  readonly family: number;
  readonly #sock: GenlSocket;
  readonly #socketBuffer: number;
  readonly #workerUrl: URL;
  #reader: Reader | undefined;
  readonly #cgroups: CgroupOptions;
  readonly #batchWindowMs: number;
  readonly #sys: Syscalls;
  #seq = 100;
  #version = 0;
  #size = 0;
  #closed = false;

  constructor(
    sock: GenlSocket,
    family: number,
    socketBuffer: number,
    workerUrl: URL,
    o: { cgroups: CgroupOptions; batchWindowMs: number; sys: Syscalls },
  ) {
    this.#sock = sock;
    this.#sys = o.sys;
    this.#cgroups = o.cgroups;
    this.#batchWindowMs = o.batchWindowMs;
    this.#workerUrl = workerUrl;
    this.family = family;
    this.#socketBuffer = socketBuffer;
  }

  info(): SourceInfo {
    const r = this.#reader?.stats();
    return {
      source: "netlink",
      kernelRelease: release(),
      taskstatsVersion: this.#version,
      taskstatsSize: this.#size,
      delayacct: readDelayacct(),
      socketBuffer: r?.rcvbuf ?? 0,
      kernelDrops: r?.kernelDrops ?? 0,
      overruns: r?.enobufs ?? 0,
      records: r?.records ?? 0,
      discarded: r?.discarded ?? 0,
    };
  }

  async getPid(pid: number): Promise<TaskStats> {
    return this.#get({ type: K.TASKSTATS_CMD_ATTR_PID, u32: pid }, "pid", pid);
  }

  async getTgid(tgid: number): Promise<TaskStats> {
    return this.#get({ type: K.TASKSTATS_CMD_ATTR_TGID, u32: tgid }, "tgid", tgid);
  }

  async cgroupStats(path: string, options: CgroupStatsOptions = {}): Promise<CgroupStats> {
    if (this.#closed) throw new SourceUnavailableError("the netlink source is closed");
    const dir = resolveCgroupDir(path, this.#cgroups.paths);
    const kernel = kernelCgroupstats({ sock: this.#sock, family: this.family, seq: ++this.#seq }, dir);
    if (kernel !== undefined) return { path: dir.path, method: "kernel", ...kernel };
    return {
      path: dir.path,
      method: "procfs",
      ...(await countProcfs(dir.path, { ...this.#cgroups, signal: options.signal })),
    };
  }

  start(sink: ExitSink): void {
    if (this.#reader !== undefined || this.#closed) {
      throw new Error("netlink source: start() may be called once, before close()");
    }
    this.#reader = startReader({
      family: this.family,
      rcvbuf: this.#socketBuffer,
      batchWindowMs: this.#batchWindowMs,
      sink,
      workerUrl: this.#workerUrl,
      syscalls: this.#sys,
      onFatal: (message) => logText(taskwireLogger(), "error", "netlink reader failed", { error: message }),
      onDiscard: (d) =>
        logText(
          taskwireLogger(),
          "warning",
          "an exit record could not be decoded or passed on; subscribers of its CPU get a loss marker for it " +
            "(reason SOURCE_ERROR; counted in GetInfo's source_discards). This is a bug: report it with this line",
          { ...d },
        ),
    });
  }

  watch(cpus: readonly number[], on: boolean): void {
    if (this.#reader === undefined) throw new Error("netlink source: watch() before start()");
    for (const cpu of cpus) this.#reader.watch(cpu, on);
  }

  synced(): Promise<void> {
    return this.#reader?.synced() ?? Promise.resolve();
  }

  readerCpuSeconds(): number | undefined {
    return this.#reader?.cpuSeconds();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#reader?.close();
    this.#sock.close();
  }

  #get(attr: { type: number; u32: number }, kind: "pid" | "tgid", id: number): TaskStats {
    if (this.#closed) throw new SourceUnavailableError("the netlink source is closed");
    const seq = ++this.#seq;
    let replies;
    try {
      replies = this.#sock.transact(encodeTaskstatsGet(this.family, seq, attr), seq, `TASKSTATS_CMD_GET ${kind} ${id}`);
    } catch (err) {
      throw this.#mapError(err, kind, id);
    }
    const reply = replies.find((m) => m.type === this.family);
    const parsed = reply === undefined ? undefined : parseTaskstatsNew(reply.payload);
    const agg = kind === "pid" ? parsed?.pid : parsed?.tgid;
    if (agg === undefined) {
      throw new SourceUnavailableError(`the kernel's reply to TASKSTATS_CMD_GET ${kind} ${id} held no stats`);
    }
    // Every reply carries the running kernel's struct: what GetInfo reports comes from the latest one.
    const stats = decodeTaskStats(agg.stats);
    this.#version = stats.version ?? 0;
    this.#size = agg.stats.byteLength;
    return stats;
  }

  #mapError(err: unknown, kind: "pid" | "tgid", id: number): Error {
    if (err instanceof NetlinkRequestError) {
      if (err.errno === K.ESRCH) return new TaskNotFoundError(kind, id);
      if (err.errno === K.EPERM || err.errno === K.EACCES) {
        return new SourcePermissionError(
          `the kernel refused TASKSTATS_CMD_GET (${err.message}): it needs CAP_NET_ADMIN in the initial user namespace`,
        );
      }
    }
    return err instanceof Error ? err : new Error(String(err));
  }
}
