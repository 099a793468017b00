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
   * Datagrams, each framed as [cpu u32][length u32][bytes, padded to 4]; `at`:
   * wall-clock ms (fractional) when the poll that read them returned.
   */
  | { op: "batch"; slab: ArrayBuffer; used: number; at: number }
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
  /** Most batches the main thread may have outstanding before the worker stops reading. */
  maxPendingBatches: number;
  /** Int32Array[1]: batches posted and not yet processed by the main thread. */
  pending: SharedArrayBuffer;
}

/** Frame header size in a slab. */
export const FRAME_HEADER = 8;
