/**
 * What a listener hands its stream and its users name: the queue's exits and
 * loss markers (why events were lost, what the queue drops when full), the
 * retention's exits, and the seqs an item covers. Apart from event-queue.ts
 * and retention.ts so that their code stands on its own; they export these.
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

/** A retained exit: its seq, its CPU and the payload `retain` made of its record. */
export interface RetainedExit<P> {
  readonly kind: "retained";
  readonly seq: number;
  readonly cpu: number;
  readonly payload: P;
}

/** What a stream sends: queued items, or retained ones on a resume. */
export type StreamItem<R extends CpuRecord, P> = QueueItem<R> | RetainedExit<P>;

/** The last seq an item covers. */
export function lastSeqOf(item: { kind: string; seq?: number; last?: number }): number {
  return item.kind === "lost" ? item.last! : item.seq!;
}

/** The first seq an item covers. */
export function firstSeqOf(item: { kind: string; seq?: number; first?: number }): number {
  return item.kind === "lost" ? item.first! : item.seq!;
}
