/**
 * What the listener registry (registry.ts) is made with and reports: the
 * feed it reads and the sink it gives it, its options and memory, a new
 * listener's settings, its totals, and the fixed bytes a listener and a
 * watched CPU are charged. registry.ts re-exports all of it.
 */
import type { MemoryBudget } from "./budget.ts";
import type { CpuRecord, OverflowPolicy } from "./event-queue.ts";
import type { Limits } from "./limits.ts";
import type { LossCounters, SharedSlabs } from "./listener-options.ts";

/** Where records come from, as the registry sees a source: it starts it, and says which CPUs are watched. */
export interface ExitFeed<R extends CpuRecord> {
  /** How many CPUs there can be (cpu_possible_mask's bits). */
  readonly possible: { readonly nbits: number };
  /** Starts producing into `sink`. Called once. */
  start(sink: ExitSink<R>): void;
  /** CPUs that gained their first listener (`on`) or lost their last. */
  watch(cpus: readonly number[], on: boolean): void;
  /** Stops producing. */
  close(): Promise<void>;
}

/** Receives what a feed produces, in order, per CPU. */
export interface ExitSink<R extends CpuRecord> {
  /** One exit record for the listeners of `record.cpu`. */
  exit(record: R): void;
  /** `count` records for `cpu` were lost before they were read (the kernel's socket overflowed). */
  kernelLoss(cpu: number, count: number): void;
  /** `count` records for `cpu` were read but could not be decoded or passed on (the source logs why). */
  sourceLoss(cpu: number, count: number): void;
}

/** Which listener a record could not be passed to (RegistryOptions.onDeliveryError). */
export interface DeliveryFailure {
  readonly listener: string;
  readonly cpu: number;
  /** Whether the record was counted lost for the listener (a SOURCE_ERROR marker); false when it had it queued. */
  readonly lost: boolean;
  /** Present when the listener's own account could not be mended either (its queue threw too): that error. */
  readonly unrecovered?: unknown;
}

/** Totals for GetInfo. */
export interface RegistryStats {
  listeners: number;
  streams: number;
  watchedCpus: string;
  lost: LossCounters;
  /** Exits queued over all listeners. */
  queued: number;
  /** The deepest queue's exits. */
  deepestQueue: number;
  /** Bytes listeners hold against the memory budget (queues, retention, in-flight batches, fixed costs). */
  memoryUsed: number;
  /**
   * Of memoryUsed, what listeners' events leave unpaid of the shared slabs
   * they keep alive (see _slab-ledger.ts): charged even past the budget, since
   * it is held; the listeners then drop new exits until it is given back.
   */
  memorySlabs: number;
  /** The memory budget in bytes (Number.MAX_SAFE_INTEGER when unlimited). */
  memoryBudget: number;
  /** Streams ended since the server started because their clients took no batch for a lease while the budget was past its limit (endStalled). */
  stalledStreams: number;
}

/**
 * What a listener costs beyond what it queues and retains: the Listener, its
 * queue, retention and counters, its id and map entries, with room to spare.
 * Measured on Node 20 x64: 3.2 KB per listener on 8 CPUs, its CPU entries
 * included (5,000 fresh listeners, live memory after full collections); the
 * 2,048 bytes charged before were a count of the objects of an earlier version.
 */
export const LISTENER_BYTES = 4096;

/** What one CPU of a listener costs: its place in that CPU's list and in the listener's set. */
export const CPU_ENTRY_BYTES = 48;

/** How listeners' memory is counted. */
export interface RegistryMemory<R extends CpuRecord, P> {
  /** The budget every listener charges. */
  readonly budget: MemoryBudget;
  /**
   * What queueing `record` costs a listener: the record's bytes. Records are
   * shared by the listeners they go to, and each is charged the whole: an
   * overcount, which is the safe side for a budget.
   */
  readonly sizeOf: (record: R) => number;
  /** What a retained payload costs. */
  readonly sizeOfPayload: (payload: P) => number;
  /** The buffer a retained byte-view payload views, when known without asking the view (retention.ts RetentionMemory). */
  readonly payloadBuffer?: ((record: R, payload: P) => ArrayBufferLike | undefined) | undefined;
  /** A copy of a record that shares no storage with other records (see _listener-slabs.ts SPARSE_GAP); absent: none made. */
  readonly unshare?: ((record: R) => R) | undefined;
  /** How records and retained payloads share slabs, for charging what held items keep alive (see _slab-ledger.ts); absent: they share none. */
  readonly slabs?: SharedSlabs<R> | undefined;
  /**
   * Free bytes a new listener needs beyond its fixed cost to be of any use
   * (room for a few events); not charged. Default 0.
   */
  readonly reserve?: number | undefined;
}

/** Options of the registry. */
export interface RegistryOptions<R extends CpuRecord, P> {
  readonly feed: ExitFeed<R>;
  /** What a listener keeps of each record it hands out, for resumes (see retention.ts). */
  readonly retain: (record: R) => P;
  readonly limits?: Partial<Limits> | undefined;
  /** The memory budget and record sizes; absent: an unlimited budget (still counted) and records that cost nothing beyond their queue items. */
  readonly memory?: RegistryMemory<R, P> | undefined;
  /** Clock in ms (tests pass a fake one). */
  readonly now?: () => number;
  /**
   * Told when passing a record to one listener threw (a server bug). That
   * listener's account is mended (Listener.recover): the record is a
   * SOURCE_ERROR loss for it (`lost`) unless it was queued before the throw.
   * The other listeners of its CPU get the record as usual. Absent: nothing
   * is told.
   */
  readonly onDeliveryError?: ((err: unknown, failure: DeliveryFailure) => void) | undefined;
}

/** How a new listener queues. */
export interface NewListener<R extends CpuRecord = CpuRecord> {
  /** Queue size asked for; 0 takes the default, more than the limit takes the limit. */
  readonly buffer: number;
  readonly policy: OverflowPolicy;
  readonly ephemeral: boolean;
  /** The principal that owns it (Principal.id): only it (or an admin) can find it. */
  readonly owner: string;
  /** Records its owner may see at all; undefined for every record. */
  readonly scope?: ((record: R) => boolean) | undefined;
}
