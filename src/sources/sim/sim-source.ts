/**
 * The sim source: the simulated kernel driven by the wall clock. Serves
 * without privileges, on any OS, at any CPU count.
 */
import type { TaskStats } from "../../gen/taskwire/kernel/v1/taskstats_pb.ts";
import { createPossibleCpus } from "../../kernel/cpulist.ts";
import { TASKSTATS_SIZE, TASKSTATS_VERSION } from "../../kernel/taskstats.ts";
import {
  type CgroupStats,
  type ExitSink,
  type SourceInfo,
  SourceUnavailableError,
  SourceUnsupportedError,
  TaskNotFoundError,
  type TaskstatsSource,
} from "../source.ts";
import { createSimKernel, type SimKernel } from "./sim-kernel.ts";

export { MAX_SIM_EXIT_RATE } from "./sim-kernel.ts";

/** Options of the sim source (the `--sim-*` flags). */
export interface SimSourceOptions {
  /** Possible CPUs (default 8). */
  cpus?: number;
  /** Mean exits per second (default 200). */
  exitRate?: number;
  /** PRNG seed (default 1). */
  seed?: number;
  /** The shortest wait between the timer's catch-ups with the clock, ms (default 5): exits closer together come in one. */
  tickMs?: number;
  /** Live threads kept alive. */
  population?: number;
  /** Simulated kernel.task_delayacct (default true). */
  delayacct?: boolean;
}

/** The sim source plus its kernel, for tests and benchmarks that drive it directly. */
export interface SimSource extends TaskstatsSource {
  readonly kernel: SimKernel;
}

/** Creates the sim source; it produces nothing until start(). */
export function createSimSource(options: SimSourceOptions = {}): SimSource {
  const cpus = options.cpus ?? 8;
  const kernel = createSimKernel({
    cpus,
    exitRate: options.exitRate ?? 200,
    seed: options.seed ?? 1,
    epochMs: Date.now(),
    ...(options.population !== undefined && { population: options.population }),
    ...(options.delayacct !== undefined && { delayacct: options.delayacct }),
  });
  return new _SimSource(kernel, options.tickMs ?? 5, options.delayacct ?? true);
}

/** The longest the timer waits before it looks again, ms (a low rate's next exit may be hours away). */
const MAX_WAIT_MS = 60_000;

// Said after a missing id: a shell's $$ or pid 1 asked of a sim server is the likely mistake.
const SIM_TASKS = "in the simulated kernel, whose tasks are its own, not this machine's";

class _SimSource implements SimSource {
  readonly name = "sim" as const;
  readonly possible;
  readonly kernel: SimKernel;
  readonly #tickMs: number;
  readonly #delayacct: boolean;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #started = false;
  #closed = false;

  // A simulated kernel boots when it is made: a record from one sim is not comparable with another's (the pids and
  // ac_btime start again), however many run on this machine.
  readonly #bootId = crypto.randomUUID();

  constructor(kernel: SimKernel, tickMs: number, delayacct: boolean) {
    this.kernel = kernel;
    this.possible = createPossibleCpus(Array.from({ length: kernel.cpus }, (_, i) => i));
    this.#tickMs = tickMs;
    this.#delayacct = delayacct;
  }

  info(): SourceInfo {
    return {
      source: "sim",
      kernelRelease: `taskwire simulated kernel (${this.kernel.cpus} CPUs)`,
      taskstatsVersion: TASKSTATS_VERSION,
      taskstatsSize: TASKSTATS_SIZE,
      delayacct: this.#delayacct,
      socketBuffer: 0,
      kernelDrops: 0,
      overruns: 0,
      records: this.kernel.records,
      discarded: 0,
      bootId: this.#bootId,
    };
  }

  getPid(pid: number): Promise<TaskStats> {
    return this.#lookup(() => this.kernel.getPid(pid), "pid", pid);
  }

  getTgid(tgid: number): Promise<TaskStats> {
    return this.#lookup(() => this.kernel.getTgid(tgid), "tgid", tgid);
  }

  start(sink: ExitSink): void {
    if (this.#started || this.#closed) throw new Error("sim source: start() may be called once, before close()");
    this.#started = true;
    this.kernel.onRecord = (r) => sink.exit(r);
    const t0 = performance.now() * 1e6 - this.kernel.nowNs;
    this.kernel.clockNs = () => performance.now() * 1e6 - t0;
    this.#arm();
  }

  // The timer wakes when the next exit falls due (tickMs at the soonest), not on a fixed tick: a sim at a low rate,
  // or at rate 0, does not wake 200 times a second to find nothing due. Reads and exitNow() catch up by themselves.
  #arm(): void {
    const clockNs = this.kernel.clockNs;
    if (this.#closed || clockNs === undefined) return;
    const dueMs = (this.kernel.nextExitNs - clockNs()) / 1e6;
    if (!Number.isFinite(dueMs)) return; // rate 0: nothing falls due
    this.#timer = setTimeout(() => {
      try {
        this.kernel.advanceTo(clockNs());
      } finally {
        this.#arm(); // as the fixed tick did: a throwing sink does not stop the kernel
      }
    }, Math.min(Math.max(Math.ceil(dueMs), this.#tickMs), MAX_WAIT_MS)); // ceil: a timer rounded down wakes early, for nothing
    (this.#timer as { unref?: () => void }).unref?.();
  }

  watch(cpus: readonly number[], on: boolean): void {
    this.kernel.watch(cpus, on);
  }

  synced(): Promise<void> {
    return Promise.resolve(); // the simulated kernel applies watch changes at once
  }

  cgroupStats(_path: string): Promise<CgroupStats> {
    return Promise.reject(
      new SourceUnsupportedError(
        "the simulated kernel has no cgroups; run the server with --source netlink to count a cgroup's tasks",
      ),
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.kernel.onRecord = undefined;
    this.kernel.clockNs = undefined;
  }

  async #lookup(find: () => TaskStats | undefined, kind: "pid" | "tgid", id: number): Promise<TaskStats> {
    if (this.#closed) throw new SourceUnavailableError("the sim source is closed");
    const stats = find();
    // An id from this machine (a shell's $$, pid 1) is the likely mistake: the simulated tasks are not its tasks.
    if (stats === undefined) throw new TaskNotFoundError(kind, id, SIM_TASKS);
    return stats;
  }
}
