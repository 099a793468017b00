/**
 * Main-thread side of the netlink reader: starts the worker, tells it which
 * CPUs to watch, decodes the batches it sends, and passes on the worker's
 * exact kernel-drop counts (sk_drops deltas) in stream order.
 */
import { Worker } from "node:worker_threads";
import type { ExitRecord } from "../../kernel/exit-record.ts";
import { decodeStatsVector, decodeTaskStats } from "../../kernel/taskstats-decode.ts";
import { SLOT } from "../../kernel/stats-vector.ts";
import { vectorRecord } from "../../kernel/vector-record.ts";
import { type ExitSink, SourceUnavailableError } from "../source.ts";
import { FRAME_HEADER, type FromWorker, type ToWorker, type WorkerOptions } from "./_reader-protocol.ts";
import { parseMessages, parseTaskstatsNew, type TaskstatsNew } from "./codec.ts";
import { threadCpuSeconds } from "./_thread-cpu.ts";

/** Options of the reader. */
export interface ReaderOptions {
  readonly family: number;
  /** Receive buffer per CPU socket, bytes. */
  readonly rcvbuf: number;
  readonly sink: ExitSink;
  /** Called when the worker fails for good. */
  readonly onFatal: (message: string) => void;
  /** The worker module (see _worker-url.ts). */
  readonly workerUrl: URL;
}

/** Counters of the reader. */
export interface ReaderStats {
  records: number;
  kernelDrops: number;
  enobufs: number;
  /** Receive buffer in effect (as getsockopt reports it), 0 until a CPU is watched. */
  rcvbuf: number;
  runtime: string;
}

/** The running reader. */
export interface Reader {
  watch(cpu: number, on: boolean): void;
  /** Resolves once every watch change issued so far is in effect in the kernel; rejects with the first failure among them. */
  synced(): Promise<void>;
  stats(): ReaderStats;
  /** The worker thread's CPU time so far, seconds (read from /proc now); undefined until the worker named its thread. */
  cpuSeconds(): number | undefined;
  close(): Promise<void>;
}

/** Starts the reader worker. */
export function startReader(o: ReaderOptions): Reader {
  return new _Reader(o);
}

class _Reader implements Reader {
  readonly #o: ReaderOptions;
  readonly #worker: Worker;
  readonly #pending: Int32Array;
  readonly #stats: ReaderStats = { records: 0, kernelDrops: 0, enobufs: 0, rcvbuf: 0, runtime: "" };
  #issued = 0;
  #done = 0;
  #failure: Error | undefined;
  #waiters: { target: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  #stopped: Promise<void>;
  /** The worker's kernel thread id, once it says. */
  #tid: number | undefined;

  constructor(o: ReaderOptions) {
    this.#o = o;
    const pending = new SharedArrayBuffer(4);
    this.#pending = new Int32Array(pending);
    const data: WorkerOptions = {
      family: o.family,
      rcvbuf: o.rcvbuf,
      slabBytes: 256 * 1024,
      maxPendingBatches: 256,
      pending,
    };
    this.#worker = new Worker(o.workerUrl, { workerData: data });
    this.#worker.unref();
    this.#stopped = new Promise((resolve) => {
      this.#worker.on("message", (m: FromWorker) => {
        if (m.op === "stopped") resolve();
        this.#onMessage(m);
      });
      this.#worker.on("error", (err) => this.#fail(`netlink reader worker: ${err.message}`));
      this.#worker.on("exit", () => resolve());
    });
  }

  watch(cpu: number, on: boolean): void {
    this.#issued++;
    this.#post(on ? { op: "watch", cpu } : { op: "unwatch", cpu });
  }

  synced(): Promise<void> {
    if (this.#done >= this.#issued) return this.#failure ? Promise.reject(this.#failure) : Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push({ target: this.#issued, resolve, reject }));
  }

  stats(): ReaderStats {
    return { ...this.#stats };
  }

  cpuSeconds(): number | undefined {
    return this.#tid === undefined ? undefined : threadCpuSeconds(this.#tid);
  }

  async close(): Promise<void> {
    this.#post({ op: "stop" });
    const timeout = new Promise<void>((r) => setTimeout(r, 2000).unref?.());
    await Promise.race([this.#stopped, timeout]);
    await this.#worker.terminate();
  }

  #post(m: ToWorker): void {
    this.#worker.postMessage(m);
  }

  #onMessage(m: FromWorker): void {
    switch (m.op) {
      case "batch":
        return this.#batch(new Uint8Array(m.slab, 0, m.used), m.at);
      case "enobufs":
        this.#stats.enobufs++;
        return;
      case "drops":
        this.#stats.kernelDrops += m.count;
        this.#o.sink.kernelLoss(m.cpu, m.count);
        return;
      case "watching":
        this.#stats.rcvbuf = m.rcvbuf;
        return this.#ack();
      case "unwatched":
        return this.#ack();
      case "watch-failed":
        this.#failure ??= new SourceUnavailableError(
          `the kernel did not register CPU ${m.cpu} for exit records: ${m.message}`,
        );
        return this.#ack();
      case "ready":
        this.#stats.runtime = m.runtime;
        this.#tid = m.tid;
        return;
      case "fatal":
        return this.#fail(m.message);
      case "stopped":
        return;
    }
  }

  #ack(): void {
    this.#done++;
    const ready = this.#waiters.filter((w) => w.target <= this.#done);
    this.#waiters = this.#waiters.filter((w) => w.target > this.#done);
    const failure = this.#failure;
    this.#failure = undefined;
    for (const w of ready) failure ? w.reject(failure) : w.resolve();
  }

  #fail(message: string): void {
    const err = new Error(message);
    for (const w of this.#waiters) w.reject(err);
    this.#waiters = [];
    this.#o.onFatal(message);
  }

  #batch(slab: Uint8Array, at: number): void {
    try {
      const dv = new DataView(slab.buffer, slab.byteOffset, slab.byteLength);
      for (let off = 0; off < slab.byteLength;) {
        const cpu = dv.getUint32(off, true), len = dv.getUint32(off + 4, true);
        for (const msg of parseMessages(slab.subarray(off + FRAME_HEADER, off + FRAME_HEADER + len))) {
          if (msg.type === this.#o.family) this.#record({ cpu, cpuSeq: msg.seq, receivedAtMs: at }, msg.payload);
        }
        off += FRAME_HEADER + ((len + 3) & ~3);
      }
    } finally {
      Atomics.sub(this.#pending, 0, 1);
    }
  }

  #record(where: Where, payload: Uint8Array): void {
    const { pid, tgid } = parseTaskstatsNew(payload);
    if (pid === undefined) return;
    this.#stats.records++;
    this.#o.sink.exit(vectors(where, pid, tgid) ?? messages(where, pid, tgid));
  }
}

type Aggregate = NonNullable<TaskstatsNew["pid"]>;

/** Where and when a record was read: its CPU, the kernel's per-CPU seq, the receive time. */
interface Where {
  cpu: number;
  cpuSeq: number;
  receivedAtMs: number;
}

// The usual case: the structs as number vectors (no BigInt per field; the
// TaskStats messages are built only if something reads them).
function vectors(where: Where, pid: Aggregate, tgid: Aggregate | undefined): ExitRecord | undefined {
  const pidVector = decodeStatsVector(pid.stats);
  const tgidVector = tgid === undefined ? undefined : decodeStatsVector(tgid.stats);
  if (pidVector === undefined || (tgid !== undefined && tgidVector === undefined)) return undefined;
  const acTgid = pidVector.values[SLOT.acTgid]!;
  return vectorRecord({
    ...where,
    pid: pid.id,
    tgid: tgid?.id ?? (acTgid === acTgid ? acTgid : 0),
    pidVector,
    tgidVector,
  });
}

// A 64-bit value of 2^53 or more has no exact double: that record is decoded as TaskStats messages.
function messages(where: Where, pid: Aggregate, tgid: Aggregate | undefined): ExitRecord {
  const pidStats = decodeTaskStats(pid.stats);
  return {
    ...where,
    pid: pid.id,
    tgid: tgid?.id ?? pidStats.acTgid ?? 0,
    pidStats,
    tgidStats: tgid === undefined ? undefined : decodeTaskStats(tgid.stats),
  };
}
