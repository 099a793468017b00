/**
 * A deterministic model of the kernel side of taskstats: processes with
 * threads that fork and exit on simulated CPUs in virtual time, per-CPU
 * message numbers, and the kernel's per-tgid rules. Everything is a function
 * of the options (seed included) and of how far virtual time was advanced,
 * never of wall-clock time (unless a source sets `clockNs`, which tells it
 * where the clock stands). No I/O, no timers.
 */
import { PidTable } from "./_pid-table.ts";
import type { TaskStats } from "../../gen/taskwire/kernel/v1/taskstats_pb.ts";
import type { ExitRecord } from "../../kernel/exit-record.ts";
import { copyStatsVector, type StatsVector, toTaskStats } from "../../kernel/stats-vector.ts";
import { vectorRecord } from "../../kernel/vector-record.ts";
import { addDelayacct, addLiveThread, zeroGroupStats } from "../../kernel/tgid.ts";
import { createPrng, type Prng } from "./_prng.ts";
import { drawProfile, threadStats } from "./_task-stats.ts";
import {
  COMMS,
  newProcess,
  newThread,
  type Process,
  removeThread,
  setIdentity,
  type Thread,
  UIDS,
} from "./_sim-tasks.ts";

/** Options of the simulated kernel. */
export interface SimKernelOptions {
  /** Possible CPUs, numbered 0..cpus-1. */
  cpus: number;
  /** Mean task exits per virtual second. */
  exitRate: number;
  /** PRNG seed. */
  seed: number;
  /** Live threads kept alive (default max(64, 4 x cpus)). */
  population?: number;
  /** Wall-clock ms that virtual time 0 stands for (ac_btime). */
  epochMs?: number;
  /** kernel.task_delayacct: delay fields are zero when off. */
  delayacct?: boolean;
}

/** The simulated kernel. */
export interface SimKernel {
  readonly cpus: number;
  /** Virtual time now, ns. */
  readonly nowNs: number;
  /** Runs virtual time forward to `ns`, emitting the exits that fall in it. */
  advanceTo(ns: number): void;
  /**
   * Runs exactly `n` exits now (for benchmarks at full speed). With `clockNs`
   * set, the exits the rate had due by the clock's time come first.
   */
  exitNow(n: number): void;
  /** Virtual time of the next exit the rate schedules, ns (Infinity at rate 0). */
  readonly nextExitNs: number;
  /**
   * Virtual time by the clock, where a source drives the kernel from one
   * (sim-source.ts): exitNow(), getPid() and getTgid() first advance to it,
   * so they see the present although virtual time otherwise moves only when
   * an exit falls due (nowNs, records and the live threads are as of the last
   * advance). Undefined: virtual time moves only through advanceTo().
   */
  clockNs: (() => number) | undefined;
  /**
   * Where records for watched CPUs go: those of one call (advanceTo(),
   * exitNow(), or the catch-up of getPid() and getTgid()) once its exits are
   * made, HANDOFF_RECORDS at a time at most, in the order they were made. A
   * throw stops neither the call's other exits nor their hand-off: the call
   * throws the first error at its end. A call made from inside onRecord
   * returns before its records are handed on: they follow the ones being
   * handed on, all of them held until then.
   */
  onRecord: ((record: ExitRecord) => void) | undefined;
  /** Marks CPUs as having listeners; only they get records built. */
  watch(cpus: readonly number[], on: boolean): void;
  getPid(pid: number): TaskStats | undefined;
  getTgid(tgid: number): TaskStats | undefined;
  /** Live thread ids (for tests and the CLI's examples). */
  livePids(): number[];
  /** Live threads now (stays near the population: exits are replaced). */
  readonly liveThreads: number;
  readonly records: number;
}

const PID_MAX = 4_194_304; // /proc/sys/kernel/pid_max on 64-bit
/** Most live threads: a fork must find a free pid, and the pid table's memory grows with the population. */
const MAX_POPULATION = 1_048_576;

/**
 * Most exits a second. At 10^6 a sim server with no subscriber took 93% of a core on this project's machines and
 * still answered; at 10^8 it never got as far as listening.
 */
export const MAX_SIM_EXIT_RATE = 1_000_000;

/**
 * Most records made before they are handed to onRecord. The kernel builds
 * each record in the exiting task's context (taskstats_exit()) and queues it
 * on the listener's socket, and the netlink source hands what its reader
 * took to the listener table in batches: a record arrives already made, and
 * the making of the ones after it is not the server's work. Handing each one
 * on as it was made put the making of the rest of a wake's exits after a
 * record's arrival (where the latency benches stamp it). Streams write once
 * the wake is over either way: the time from an exit falling due to its
 * write is the same. Bounded, so that a stalled loop catching up at a high
 * rate does not hold its whole backlog at once.
 */
export const HANDOFF_RECORDS = 256;

/** Creates a simulated kernel. */
export function createSimKernel(options: SimKernelOptions): SimKernel {
  const { cpus, exitRate, seed } = options;
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 65536) {
    throw new RangeError(`cpus must be an integer in 1-65536, got ${cpus}`);
  }
  if (!(exitRate >= 0) || !(exitRate <= MAX_SIM_EXIT_RATE)) {
    throw new RangeError(`exitRate must be a number from 0 to ${MAX_SIM_EXIT_RATE}, got ${exitRate}`);
  }
  if (!Number.isInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  const population = options.population ?? Math.max(64, 4 * cpus);
  if (!Number.isInteger(population) || population < 2 || population > MAX_POPULATION) {
    throw new RangeError(`population must be an integer in 2-${MAX_POPULATION}, got ${population}`);
  }
  return new _SimKernel({ ...options, population });
}

class _SimKernel implements SimKernel {
  readonly cpus: number;
  onRecord: ((record: ExitRecord) => void) | undefined;
  clockNs: (() => number) | undefined;
  records = 0;
  #nextExit: number;
  #nextPid = 300;
  readonly #meanGapNs: number;
  readonly #population: number;
  readonly #rng: Prng;
  /** Virtual time now (nowNs) and what stats are computed against. */
  readonly #ctx: { nowNs: number; epochMs: number; delayacct: boolean };
  readonly #live: Thread[] = [];
  readonly #threads = new PidTable<Thread>();
  readonly #watched: Uint8Array;
  readonly #cpuSeq: Uint32Array;
  // Exited threads and processes, reused by forks: at high exit rates a
  // thread lives milliseconds, and allocating each anew would add garbage
  // per exit to the server's process (records reference neither).
  readonly #freeThreads: Thread[] = [];
  /** The exiting task's code and group state, handed to threadStats (which keeps no reference): one object, reused. */
  readonly #exit = { code: 0, groupDead: false };
  readonly #freeProcs: Process[] = [];
  /** Worker threads' comms by process comm and number, made once (a process comm is one of COMMS). */
  readonly #threadComms = new Map<string, string[]>();
  /** Records made and not yet handed to onRecord. */
  readonly #made: ExitRecord[] = [];
  #handingOff = false;
  /** The first error onRecord threw in the call under way. */
  #failed: { error: unknown } | undefined;

  constructor(o: Required<Pick<SimKernelOptions, "population">> & SimKernelOptions) {
    this.cpus = o.cpus;
    this.#rng = createPrng(o.seed);
    this.#population = o.population;
    this.#meanGapNs = o.exitRate > 0 ? 1e9 / o.exitRate : Infinity;
    this.#ctx = { nowNs: 0, epochMs: o.epochMs ?? 1_767_225_600_000, delayacct: o.delayacct ?? true };
    this.#watched = new Uint8Array(o.cpus);
    this.#cpuSeq = new Uint32Array(o.cpus);
    // Boot-time tasks started up to an hour before virtual time 0; their parent is init (pid 1, not simulated).
    while (this.#live.length < o.population) this.#spawn(-this.#rng.next() * 3.6e12, undefined);
    this.#nextExit = this.#rng.exp(this.#meanGapNs);
  }

  get nowNs(): number {
    return this.#ctx.nowNs;
  }

  get liveThreads(): number {
    return this.#live.length;
  }

  advanceTo(ns: number): void {
    this.#advance(ns);
    this.#handOff();
    this.#throwFailed();
  }

  #advance(ns: number): void {
    while (this.#nextExit <= ns) {
      this.#setNow(this.#nextExit);
      this.#exitOne();
      this.#nextExit += this.#rng.exp(this.#meanGapNs);
      this.#handOffFull();
    }
    this.#setNow(Math.max(this.#ctx.nowNs, ns));
  }

  get nextExitNs(): number {
    // At rate 0 the draw is -log(u) x Infinity, which is NaN for u = 1: nothing is due, whatever was drawn.
    return this.#meanGapNs === Infinity ? Infinity : this.#nextExit;
  }

  exitNow(n: number): void {
    if (this.clockNs !== undefined) this.#advance(this.clockNs());
    for (let i = 0; i < n; i++) {
      this.#setNow(this.#ctx.nowNs + 1000);
      this.#exitOne();
      this.#handOffFull();
    }
    if (this.#nextExit < this.#ctx.nowNs) this.#nextExit = this.#ctx.nowNs + this.#rng.exp(this.#meanGapNs);
    this.#handOff();
    this.#throwFailed();
  }

  watch(cpus: readonly number[], on: boolean): void {
    for (const cpu of cpus) {
      if (cpu < 0 || cpu >= this.cpus) throw new RangeError(`CPU ${cpu} is outside 0-${this.cpus - 1}`);
      this.#watched[cpu] = on ? 1 : 0;
    }
  }

  // Virtual time up to the clock's, where one drives this kernel: the exits due by now happen first.
  #catchUp(): void {
    if (this.clockNs !== undefined) this.advanceTo(this.clockNs());
  }

  getPid(pid: number): TaskStats | undefined {
    this.#catchUp();
    const t = this.#threads.get(pid);
    return t === undefined ? undefined : toTaskStats(threadStats(t.identity, t.profile, this.#ctx));
  }

  getTgid(tgid: number): TaskStats | undefined {
    this.#catchUp();
    const proc = this.#threads.get(tgid)?.proc;
    if (proc === undefined || proc.tgid !== tgid) return undefined;
    const sum = proc.stats ? copyStatsVector(proc.stats) : zeroGroupStats();
    for (const t of proc.threads) addLiveThread(sum, this.#statsOf(t));
    return toTaskStats(sum);
  }

  livePids(): number[] {
    return this.#threads.keys().sort((a, b) => a - b);
  }

  #setNow(ns: number): void {
    this.#ctx.nowNs = ns;
  }

  #statsOf(t: Thread, exit?: { code: number; groupDead: boolean }): StatsVector {
    return threadStats(t.identity, t.profile, this.#ctx, exit);
  }

  // One task exits on a random CPU; another is forked so the population holds.
  #exitOne(): void {
    const victim = this.#pickVictim();
    const proc = victim.proc;
    const cpu = this.#rng.int(this.cpus);
    const groupDead = proc.threads.length === 1;
    // taskstats_tgid_alloc(): a thread leaving a non-empty group allocates signal->stats.
    if (!groupDead) proc.stats ??= zeroGroupStats();
    const code = groupDead ? this.#exitCode() : 0;
    const needRecord = this.#watched[cpu] === 1;
    const exit = this.#exit;
    exit.code = code;
    exit.groupDead = groupDead;
    const stats = proc.stats !== undefined || needRecord ? this.#statsOf(victim, exit) : undefined;
    if (proc.stats !== undefined && stats !== undefined) addDelayacct(proc.stats, stats); // fill_tgid_exit()
    this.#remove(victim);
    if (needRecord && stats !== undefined) this.#emit(cpu, victim, stats, groupDead);
    // Fork replacements only up to the population: a new process may bring threads of its own.
    while (this.#live.length < this.#population) this.#spawn(this.#ctx.nowNs, this.#randomProcess());
  }

  #emit(cpu: number, t: Thread, pidVector: StatsVector, groupDead: boolean): void {
    // prepare_reply(): nlmsg_seq comes from a per-CPU counter bumped only when a record is built.
    const cpuSeq = this.#cpuSeq[cpu]!;
    this.#cpuSeq[cpu] = cpuSeq + 1;
    const tgidVector = groupDead && t.proc.stats !== undefined ? copyStatsVector(t.proc.stats) : undefined;
    this.records++;
    const receivedAtMs = this.#ctx.epochMs + this.#ctx.nowNs / 1e6; // the exit's virtual time, as ac_btime is
    this.#made.push(vectorRecord({ cpu, cpuSeq, receivedAtMs, pid: t.pid, tgid: t.proc.tgid, pidVector, tgidVector }));
  }

  // Between exits, never inside one: onRecord then sees a whole kernel (the exiting task's replacement forked).
  #handOffFull(): void {
    if (this.#made.length >= HANDOFF_RECORDS) this.#handOff();
  }

  // Every record made goes to onRecord, in order, even past one that throws: the first error is kept for the end of
  // the call (#throwFailed), so that a throw stops neither the call's other exits nor its bookkeeping (a throw out of
  // exitNow() before it moved nextExit past nowNs took virtual time backwards on the next advanceTo()). A record made
  // by a call from inside onRecord joins the list being handed off, behind the ones before it.
  #handOff(): void {
    if (this.#handingOff) return;
    this.#handingOff = true;
    const made = this.#made;
    for (let i = 0; i < made.length; i++) {
      try {
        this.onRecord?.(made[i]!);
      } catch (error) {
        this.#failed ??= { error };
      }
    }
    made.length = 0;
    this.#handingOff = false;
  }

  // The first error onRecord threw during the call now ending; a call from inside onRecord leaves it to the outer one.
  #throwFailed(): void {
    const failed = this.#failed;
    if (failed === undefined || this.#handingOff) return;
    this.#failed = undefined;
    throw failed.error;
  }

  // A group leader outlives its other threads here (the kernel keeps it as a zombie until they go).
  #pickVictim(): Thread {
    const t = this.#live[this.#rng.int(this.#live.length)]!;
    if (t.pid !== t.proc.tgid || t.proc.threads.length === 1) return t;
    for (const other of t.proc.threads) if (other.pid !== t.pid) return other;
    return t;
  }

  #exitCode(): number {
    const r = this.#rng.next();
    if (r < 0.85) return 0;
    if (r < 0.95) return (1 + this.#rng.int(3)) << 8; // exit(1..3): wait status code << 8
    return this.#rng.pick([9, 15, 6 | 0x80]); // killed: SIGKILL, SIGTERM, SIGABRT with core
  }

  #randomProcess(): Process {
    return this.#live[this.#rng.int(this.#live.length)]!.proc;
  }

  // A new thread in `parent`'s group (30%), else a forked process with 1-8 threads.
  #spawn(atNs: number, parent: Process | undefined): void {
    if (parent !== undefined && this.#rng.next() < 0.3) {
      this.#addThread(parent, atNs, this.#threadComm(parent.comm, parent.threads.length));
      return;
    }
    const proc = this.#spawnProcess(parent?.tgid ?? 1, this.#rng.pick(COMMS), atNs);
    const extra = this.#rng.next() < 0.25 ? 1 + this.#rng.int(7) : 0;
    for (let i = 1; i <= extra; i++) this.#addThread(proc, atNs + i * 1000, this.#threadComm(proc.comm, i));
  }

  // Reuse changes no random draw or its order: the same seed gives the same run whether or not a slot was reused.
  #spawnProcess(ppid: number, comm: string, atNs: number): Process {
    const proc = this.#freeProcs.pop() ?? newProcess();
    proc.tgid = this.#allocPid();
    proc.ppid = ppid;
    proc.comm = comm;
    proc.uid = this.#rng.pick(UIDS);
    proc.nice = this.#rng.next() < 0.9 ? 0 : this.#rng.int(20);
    proc.startNs = atNs;
    proc.exeInode = 100_000 + this.#rng.int(900_000);
    proc.forkedOnly = this.#rng.next() < 0.1;
    proc.stats = undefined;
    this.#addThread(proc, atNs, comm, proc.tgid);
    return proc;
  }

  // "make-w2": a process's comm (to 10 characters) and the worker's number, as a worker pool names its threads.
  #threadComm(comm: string, n: number): string {
    let names = this.#threadComms.get(comm);
    if (names === undefined) this.#threadComms.set(comm, names = []);
    return names[n] ??= `${comm.slice(0, 10)}-w${n}`;
  }

  #addThread(proc: Process, atNs: number, comm: string, pid = this.#allocPid()): void {
    const t = this.#freeThreads.pop() ?? newThread(proc);
    t.pid = pid;
    t.proc = proc;
    t.index = this.#live.length;
    setIdentity(t.identity, pid, atNs, comm, proc);
    drawProfile(this.#rng, t.profile);
    proc.threads.push(t);
    this.#threads.set(pid, t);
    this.#live.push(t);
  }

  #remove(t: Thread): void {
    const last = this.#live.pop()!;
    if (last !== t) {
      this.#live[t.index] = last;
      last.index = t.index;
    }
    removeThread(t.proc.threads, t);
    this.#threads.delete(t.pid);
    this.#freeThreads.push(t);
    if (t.proc.threads.length === 0) this.#freeProcs.push(t.proc);
  }

  #allocPid(): number {
    do {
      this.#nextPid = this.#nextPid >= PID_MAX ? 300 : this.#nextPid + 1;
    } while (this.#threads.has(this.#nextPid));
    return this.#nextPid;
  }
}
