/**
 * What a listener is made with and the names its users share: how a stream
 * ends, the loss counters, and how records share slabs. Apart from
 * listener.ts so that the registry's users can name them without the class.
 */
import type { BudgetAccount } from "./budget.ts";
import type { CpuRecord, LossKind, OverflowPolicy } from "./event-queue.ts";
import type { SlabSizes, SlabTerms } from "./_slab-ledger.ts";

/** How a stream ends: after its queue when the listener is removed; at once on takeover or shutdown. */
export type StreamEnd = "removed" | "takeover" | "shutdown" | "stalled";

/** Loss counters by reason. */
export type LossCounters = Record<LossKind, number>;

/** Options for a new listener. */
export interface ListenerOptions<R extends CpuRecord, P> {
  readonly id: string;
  readonly capacity: number;
  readonly policy: OverflowPolicy;
  /** Dies with its stream (inline cpumask subscription). */
  readonly ephemeral: boolean;
  /** The principal that made it (Principal.id). */
  readonly owner: string;
  /** Records its owner may see at all (applied before `filter`, for good); undefined for every record. */
  readonly scope?: ((record: R) => boolean) | undefined;
  readonly now: number;
  /** What to keep of a record handed to a stream, for resumes. */
  readonly retain: (record: R) => P;
  /** The budget account it charges; when absent, one of the shared unlimited budget (budget.ts unbudgeted()). */
  readonly account?: BudgetAccount | undefined;
  /** Bytes a queued record costs, when deliver() is not told (the registry tells it); 0 when absent. */
  readonly sizeOf?: ((record: R) => number) | undefined;
  /** Bytes a retained payload costs; 0 when absent. */
  readonly sizeOfPayload?: ((payload: P) => number) | undefined;
  /** The buffer a retained byte-view payload views, when known without asking the view (RetentionMemory.payloadBuffer). */
  readonly payloadBuffer?: ((record: R, payload: P) => ArrayBufferLike | undefined) | undefined;
  /** A copy of a record sharing no storage with its neighbours, queued instead of a record held apart (see SPARSE_GAP). */
  readonly unshare?: ((record: R) => R) | undefined;
  /** How its records and retained payloads share slabs, for the ledger's count (_slab-ledger.ts); absent: they share none. */
  readonly slabs?: SharedSlabs<R> | undefined;
}

/** How records and retained byte payloads share slabs (see _slab-ledger.ts). */
export interface SharedSlabs<R> {
  /** How queued records share slabs (a record queued as its unshared copy keeps none alive). */
  readonly records: SlabTerms<R>;
  /** The buffers byte payloads are kept in (a slab, when a payload views part of it). */
  readonly payloads: SlabSizes;
}

/** What one range of seqs counted as RETENTION loss costs: two numbers in a flat array, with room for its growth. */
export const COUNTED_RANGE_BYTES = 32;

/** Every loss reason at zero. */
export function noLosses(): LossCounters {
  return {
    "subscriber-overflow": 0,
    "memory-budget": 0,
    "kernel-overflow": 0,
    "source-error": 0,
    retention: 0,
    restart: 0,
  };
}
