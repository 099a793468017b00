/**
 * What a listener's queue holds and its users name: exits and loss markers,
 * why events were lost, what the queue drops when full. Types only, apart
 * from event-queue.ts so that the queue's code stands on its own.
 */

/** Why events were lost (mirrors taskwire.v1.LossReason). */
export type LossKind =
  | "subscriber-overflow"
  | "memory-budget"
  | "kernel-overflow"
  | "source-error"
  | "retention"
  | "restart";

/** What to drop when full. */
export type OverflowPolicy = "drop-newest" | "drop-oldest";

/** What the core needs of a record: the CPU it belongs to. Everything else is opaque here. */
export interface CpuRecord {
  readonly cpu: number;
}

/** A queued exit. */
export interface QueuedExit<R extends CpuRecord = CpuRecord> {
  readonly kind: "exit";
  readonly seq: number;
  readonly record: R;
}

/** A queued loss marker covering seqs first..last (all of them lost). */
export interface QueuedLoss {
  readonly kind: "lost";
  first: number;
  last: number;
  readonly reason: LossKind;
  /** CPU of a kernel overflow or a source error; -1 otherwise. */
  readonly cpu: number;
}

/** A queued exit or loss marker. */
export type QueueItem<R extends CpuRecord = CpuRecord> = QueuedExit<R> | QueuedLoss;
