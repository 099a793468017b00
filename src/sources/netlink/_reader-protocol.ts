/** Messages between the netlink reader worker and the main thread. */

/** Main -> worker. */
export type ToWorker =
  | { op: "watch"; cpu: number }
  | { op: "unwatch"; cpu: number }
  /** A slab handed back once its batch is decoded (transferred): the worker reads into it again. */
  | { op: "slab"; slab: ArrayBuffer }
  | { op: "stop" };

/** Worker -> main. */
export type FromWorker =
  /** `tid`: the worker's kernel thread id (for its CPU time), when /proc names it. */
  | { op: "ready"; runtime: string; tid: number | undefined }
  | { op: "watching"; cpu: number; rcvbuf: number; portId: number }
  | { op: "watch-failed"; cpu: number; errno: number; message: string }
  | { op: "unwatched"; cpu: number }
  /**
   * Datagrams, each framed as [cpu u32][length u32][received-at f64][bytes,
   * padded to 8]; received-at: wall-clock ms (fractional) when the recvmmsg
   * that read it was made. The main thread hands the slab back ("slab").
   */
  | { op: "batch"; slab: ArrayBuffer; used: number }
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
  /** Int32Array[1]: batches posted and not yet processed by the main thread. */
  pending: SharedArrayBuffer;
  /** The doorbell's eventfd (see _doorbell.ts), rung by the main thread after each control message. */
  doorbell: number;
}

/** Frame header size in a slab: cpu u32, length u32, received-at f64. */
export const FRAME_HEADER = 16;
