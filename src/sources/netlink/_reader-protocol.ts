/** Messages between the netlink reader worker and the main thread. */

/** Main -> worker. */
export type ToWorker =
  | { op: "watch"; cpu: number }
  | { op: "unwatch"; cpu: number }
  | { op: "stop" };

/** Worker -> main. */
export type FromWorker =
  /** `tid`: the worker's kernel thread id (for its CPU time), when /proc names it. */
  | { op: "ready"; runtime: string; tid: number | undefined }
  | { op: "watching"; cpu: number; rcvbuf: number; portId: number }
  | { op: "watch-failed"; cpu: number; errno: number; message: string }
  | { op: "unwatched"; cpu: number }
  /**
   * Slab number `slab` of the pool holds `used` bytes of datagrams, each
   * framed as [cpu u32][length u32][received-at f64][bytes, padded to 8];
   * received-at: wall-clock ms (fractional) when the recvmmsg that read it
   * was made. `buffer` (shared memory) comes with a slab's first batch only.
   * The main thread hands the slab back by clearing its flag in `shared`.
   */
  | { op: "batch"; slab: number; used: number; buffer?: SharedArrayBuffer }
  | { op: "enobufs"; cpu: number }
  /** The kernel dropped `count` more records for this CPU's socket (sk_drops delta), after the batches posted before. */
  | { op: "drops"; cpu: number; count: number }
  | { op: "fatal"; message: string }
  | { op: "stopped" };

/** Options the worker starts with. */
export interface WorkerOptions {
  family: number;
  rcvbuf: number;
  slabBytes: number;
  /**
   * Most slabs in the pool (allocated as needed, then reused): the most
   * batches the main thread may have outstanding. With none free the worker
   * stops reading and the kernel buffer absorbs.
   */
  slabs: number;
  /** Datagrams per recvmmsg call at most. */
  vlen: number;
  /**
   * How long the worker may hold records read before handing them over, ms:
   * one hand-off per window, not one per wake-up (the per-batch costs on the
   * main thread dwarf the per-record ones at a few records a batch).
   */
  batchWindowMs: number;
  /**
   * Int32Array[SHARED_SLABS + slabs], shared by both threads: see SHARED_PENDING, SHARED_POSTED, SHARED_STOP,
   * SHARED_SLABS.
   */
  shared: SharedArrayBuffer;
  /** The doorbell's eventfd (see _doorbell.ts), rung by the main thread after each control message. */
  doorbell: number;
  /**
   * Whether the main thread rings the doorbell (with SHARED_STOP) as the process exits, so the idle poll may wait
   * long. Not when the reader was started from a worker thread: terminating that thread emits no "exit" to hook.
   */
  exitHooked: boolean;
}

/** Frame header size in a slab: cpu u32, length u32, received-at f64. */
export const FRAME_HEADER = 16;

/** Index in WorkerOptions.shared: batches posted and not yet processed by the main thread (it notifies on each). */
export const SHARED_PENDING = 0;
/** Index in WorkerOptions.shared: control messages the main thread has posted (the worker counts those it took). */
export const SHARED_POSTED = 1;
/**
 * Index in WorkerOptions.shared: 1 once the worker must stop at once, with no message: the process is exiting (the
 * main thread's "exit" hook), or the reader failed or is being terminated. The main thread sets it, then rings the
 * doorbell; the worker leaves its loop for good, so neither Node's exit (which joins worker threads) nor terminate()
 * waits for its poll's timeout.
 */
export const SHARED_STOP = 2;
/** Index in WorkerOptions.shared of slab 0's flag: 1 from the batch's post until the main thread is done with it. */
export const SHARED_SLABS = 3;
