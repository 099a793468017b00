/**
 * Main-thread side of the netlink reader: starts the worker, tells it which
 * CPUs to watch, decodes the batches it sends, and passes on the worker's
 * exact kernel-drop counts (sk_drops deltas) in stream order.
 */
import { isMainThread, Worker } from "node:worker_threads";
import { messages, vectors } from "./_exit-records.ts";
import { stopOnExit } from "./_stop-on-exit.ts";
import { type ExitSink, SourceUnavailableError } from "../source.ts";
import {
  FRAME_HEADER,
  type FromWorker,
  SHARED_PENDING,
  SHARED_POSTED,
  SHARED_SLABS,
  SHARED_STOP,
  type ToWorker,
  type WorkerOptions,
} from "./_reader-protocol.ts";
import { createTaskstatsNewAt, NetlinkFormatError, readTaskstatsNewAt, type TaskstatsNewAt } from "./codec.ts";
import * as K from "./constants.ts";
import { threadCpuSeconds } from "./_thread-cpu.ts";
import { createDoorbell, type Doorbell } from "./_doorbell.ts";
import type { Syscalls } from "../../sys/syscalls.ts";

/** Options of the reader. */
export interface ReaderOptions {
  readonly family: number;
  /** Receive buffer per CPU socket, bytes. */
  readonly rcvbuf: number;
  readonly sink: ExitSink;
  /** How long the worker may hold records before handing them over, ms (WorkerOptions.batchWindowMs). */
  readonly batchWindowMs?: number;
  /** Called when the worker fails for good. */
  readonly onFatal: (message: string) => void;
  /** Called (at most once a second) when a datagram could not be passed on; it is counted lost (sink.sourceLoss). */
  readonly onDiscard: (d: Discard) => void;
  /** The worker module (see _worker-url.ts). */
  readonly workerUrl: URL;
  /** This thread's syscalls: the main thread rings the worker's doorbell with them. */
  readonly syscalls: Syscalls;
}

/** A datagram the reader counted lost instead of passing it on, as logged. */
export interface Discard {
  readonly cpu: number;
  /** Discarded so far, this one included. */
  readonly discarded: number;
  /** Discarded since the last one logged (the log says at most one a second), this one included. */
  readonly sinceLastLog: number;
  readonly error: string;
  readonly stack?: string;
}

/** Counters of the reader. */
export interface ReaderStats {
  records: number;
  kernelDrops: number;
  /** Datagrams that could not be decoded or that the sink threw on; each counted as one lost record of its CPU. */
  discarded: number;
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

/** Records may wait this long in the worker before the main thread gets them, by default. */
export const DEFAULT_BATCH_WINDOW_MS = 2;
// Slabs of 1 MiB (~1,000 records; a full one is handed over at once), at most 64 (the 64 MiB the
// main thread could hold before pooling, as 256 batches of 256 KiB).
const SLAB_BYTES = 1 << 20;
const SLABS = 64;
const VLEN = 64;

/** Starts the reader worker. */
export function startReader(o: ReaderOptions): Reader {
  return new _Reader(o);
}

class _Reader implements Reader {
  readonly #o: ReaderOptions;
  readonly #worker: Worker;
  /** Shared with the worker: see SHARED_PENDING, SHARED_POSTED, SHARED_STOP, SHARED_SLABS. */
  readonly #shared: Int32Array;
  /** Views of the worker's slabs by number, each made at the slab's first batch. */
  readonly #slabs: { dv: DataView; bytes: Uint8Array }[] = [];
  readonly #doorbell: Doorbell;
  readonly #stats: ReaderStats = {
    records: 0,
    kernelDrops: 0,
    discarded: 0,
    enobufs: 0,
    rcvbuf: 0,
    runtime: "",
  };
  #issued = 0;
  #done = 0;
  #failure: Error | undefined;
  /** Why the reader takes no more watch changes: closed, or the worker failed for good. */
  #ended: Error | undefined;
  #waiters: { target: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  /** The CPUs watch() was last told to watch. */
  readonly #watched = new Set<number>();
  #stopped: Promise<void>;
  #closing: Promise<void> | undefined;
  /** The worker's kernel thread id, once it says. */
  #tid: number | undefined;

  constructor(o: ReaderOptions) {
    this.#o = o;
    const shared = new SharedArrayBuffer(4 * (SHARED_SLABS + SLABS));
    this.#shared = new Int32Array(shared);
    this.#doorbell = createDoorbell(o.syscalls);
    const data: WorkerOptions = {
      family: o.family,
      rcvbuf: o.rcvbuf,
      slabBytes: SLAB_BYTES,
      slabs: SLABS,
      vlen: VLEN,
      batchWindowMs: o.batchWindowMs ?? DEFAULT_BATCH_WINDOW_MS,
      shared,
      doorbell: this.#doorbell.fd,
      exitHooked: isMainThread,
    };
    this.#worker = new Worker(o.workerUrl, { workerData: data });
    this.#stopped = new Promise((resolve) => {
      this.#worker.on("message", (m: FromWorker) => {
        if (m.op === "stopped") resolve();
        this.#onMessage(m);
      });
      this.#worker.on("error", (err) => this.#fail(`netlink reader worker: ${err.message}`));
      this.#worker.on("exit", () => resolve());
    });
    // After the listeners: Node refs a worker's port again when a "message" listener is added.
    this.#hold();
    stopOnExit(this.#stopNow, true);
  }

  // Tells the worker to leave its loop at once and wakes it. Node joins worker threads as the process exits (after
  // its "exit" listeners ran) and in terminate(); a worker in poll() would hold either until the poll's timeout.
  // (Deno and Bun do not join at exit.)
  readonly #stopNow = (): void => {
    Atomics.store(this.#shared, SHARED_STOP, 1);
    this.#doorbell.ring();
  };

  // The worker keeps the process alive as a listening server does: while it watches a CPU (records may come), and
  // while a synced() waits on it (or `await source.synced()` in a script could be cut short by the process ending).
  // A source that watches nothing, or has failed, does not: before, a started source kept Node and Bun running even
  // after it stopped watching.
  #hold(): void {
    const waited = this.#waiters.length > 0 || (this.#ended === undefined && this.#watched.size > 0);
    if (waited) this.#worker.ref();
    else this.#worker.unref();
  }

  // After close() or a fatal failure nothing reads the port, and the doorbell's fd may be closed and its number reused
  // by another file: a change is refused through synced() instead.
  watch(cpu: number, on: boolean): void {
    if (this.#ended !== undefined) return;
    this.#issued++;
    this.#post(on ? { op: "watch", cpu } : { op: "unwatch", cpu });
    if (on) this.#watched.add(cpu);
    else this.#watched.delete(cpu);
    this.#hold();
  }

  synced(): Promise<void> {
    if (this.#ended !== undefined) return Promise.reject(this.#ended);
    if (this.#done >= this.#issued) return this.#failure ? Promise.reject(this.#failure) : Promise.resolve();
    const waiting = new Promise<void>((resolve, reject) =>
      this.#waiters.push({ target: this.#issued, resolve, reject })
    );
    this.#hold();
    return waiting;
  }

  stats(): ReaderStats {
    return { ...this.#stats };
  }

  cpuSeconds(): number | undefined {
    return this.#tid === undefined ? undefined : threadCpuSeconds(this.#tid);
  }

  close(): Promise<void> {
    return (this.#closing ??= this.#close());
  }

  async #close(): Promise<void> {
    if (this.#ended === undefined) { // after a fatal failure there is no worker loop to stop
      this.#worker.ref(); // until it stopped: close() is awaited
      this.#post({ op: "stop" });
      this.#ended = new SourceUnavailableError("the netlink source is closed");
      const timeout = new Promise<void>((r) => setTimeout(r, 2000).unref?.());
      await Promise.race([this.#stopped, timeout]);
    }
    this.#stopNow(); // after a failure, or a stop that timed out, the worker may still be in its poll
    await this.#worker.terminate();
    stopOnExit(this.#stopNow, false); // before the doorbell's fd closes: its number may be reused
    this.#doorbell.close(); // the worker thread is gone: nothing polls it
    this.#slabs.length = 0; // up to 64 MiB of shared memory, kept while this object is
    this.#rejectWaiters(this.#ended);
  }

  // A control message, its count, then the doorbell: the message is queued on the worker's port before the worker
  // sees either (it leaves its loop for the port only while the count is ahead of the messages it took).
  #post(m: ToWorker): void {
    this.#worker.postMessage(m);
    Atomics.add(this.#shared, SHARED_POSTED, 1);
    this.#doorbell.ring();
  }

  #onMessage(m: FromWorker): void {
    switch (m.op) {
      case "batch":
        if (m.buffer !== undefined) {
          this.#slabs[m.slab] = { dv: new DataView(m.buffer), bytes: new Uint8Array(m.buffer) };
        }
        return this.#batch(m.slab, m.used);
      case "enobufs":
        this.#stats.enobufs++;
        return;
      case "drops":
        this.#stats.kernelDrops += m.count;
        this.#lose("kernelLoss", m.cpu, m.count);
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
    if (this.#closing === undefined) this.#hold();
  }

  #fail(message: string): void {
    const err = new SourceUnavailableError(`the netlink reader failed: ${message}`);
    if (this.#ended === undefined) this.#stopNow(); // it reads for nobody now
    this.#ended ??= err;
    this.#rejectWaiters(err);
    this.#o.onFatal(message);
  }

  #rejectWaiters(err: Error): void {
    for (const w of this.#waiters) w.reject(err);
    this.#waiters = [];
    if (this.#closing === undefined) this.#hold();
  }

  #batch(index: number, used: number): void {
    const slab = this.#slabs[index];
    if (slab === undefined) return; // closed: the views were let go with the worker
    const { dv, bytes } = slab;
    try {
      for (let off = 0; off < used;) {
        const len = dv.getUint32(off + 4, true);
        this.#cpu = dv.getUint32(off, true);
        this.#at = dv.getFloat64(off + 8, true);
        this.#guarded(dv, bytes, off + FRAME_HEADER, off + FRAME_HEADER + len);
        off += FRAME_HEADER + ((len + 7) & ~7);
      }
    } finally {
      Atomics.store(this.#shared, SHARED_SLABS + index, 0); // back to the pool
      Atomics.sub(this.#shared, SHARED_PENDING, 1);
      Atomics.notify(this.#shared, SHARED_PENDING); // a reader past its window (or out of slabs) waits on this
    }
  }

  /** The CPU and receive time of the datagram being walked. */
  #cpu = 0;
  #at = 0;
  #lastDiscardLog = -Infinity;
  /** Discards not logged yet (the log says at most one a second). */
  #unlogged = 0;

  // One bad datagram (or a sink that throws) must not lose the rest of its slab, nor crash the process from a message
  // handler: it is counted as one lost record of its CPU (the kernel sends one TASKSTATS_CMD_NEW per datagram) and the
  // walk goes on with the next.
  #guarded(dv: DataView, bytes: Uint8Array, start: number, end: number): void {
    try {
      this.#datagram(dv, bytes, start, end);
    } catch (err) {
      this.#stats.discarded++;
      this.#unlogged++;
      this.#lose("sourceLoss", this.#cpu, 1);
      const now = performance.now();
      if (now - this.#lastDiscardLog < 1000) return;
      this.#lastDiscardLog = now;
      this.#o.onDiscard({
        cpu: this.#cpu,
        discarded: this.#stats.discarded,
        sinceLastLog: this.#unlogged,
        error: err instanceof Error ? err.message : String(err),
        ...(err instanceof Error && err.stack !== undefined && { stack: err.stack }),
      });
      this.#unlogged = 0;
    }
  }

  // Loss the sink cannot take leaves no way to count it: the reader fails for good (the process goes on; the source
  // says why) rather than lose records uncounted or throw from the worker's message handler.
  #lose(kind: "kernelLoss" | "sourceLoss", cpu: number, count: number): void {
    try {
      this.#o.sink[kind](cpu, count);
    } catch (err) {
      if (this.#ended === undefined) {
        this.#fail(`the sink refused a loss of ${count} on CPU ${cpu}: ${err instanceof Error ? err.message : err}`);
      }
    }
  }
  readonly #where: TaskstatsNewAt = createTaskstatsNewAt();

  // The netlink messages of one datagram (a datagram holds one TASKSTATS_CMD_NEW, but netlink allows several).
  #datagram(dv: DataView, bytes: Uint8Array, start: number, end: number): void {
    for (let off = start; off + K.NLMSG_HDRLEN <= end;) {
      const len = dv.getUint32(off, true);
      if (len < K.NLMSG_HDRLEN || off + len > end) {
        throw new NetlinkFormatError(
          `nlmsg_len ${len} at offset ${off - start} does not fit the ${end - start}-byte datagram`,
        );
      }
      if (dv.getUint16(off + 4, true) === this.#o.family) {
        readTaskstatsNewAt(dv, off + K.NLMSG_HDRLEN, off + len, this.#where);
        this.#record(dv, bytes, dv.getUint32(off + 8, true));
      }
      off += (len + 3) & ~3;
    }
  }

  #record(dv: DataView, bytes: Uint8Array, cpuSeq: number): void {
    const w = this.#where;
    if (w.pidStats < 0) return;
    this.#stats.records++;
    this.#o.sink.exit(
      vectors(dv, bytes, w, { cpu: this.#cpu, cpuSeq, at: this.#at }) ??
        messages(bytes, w, { cpu: this.#cpu, cpuSeq, at: this.#at }),
    );
  }
}
