/**
 * What the server's listeners are charged against the memory budget
 * (core/budget.ts) for the records they queue and the payloads they retain,
 * and the budget a server gets when none is given. The core cannot look
 * inside a record; these estimates can, and err on the high side.
 *
 * Figures measured on Node 20 x64 (no pointer compression) with the sim
 * source, per record held with every other record of its slabs also held
 * (100,000 records): 270 B of objects, 1,270 B per stats vector (71 slots
 * of a shared Float64Array slab, plus the slab's share of the sim's live
 * tasks), and 670 B for its encoded Exit body (a view object and its place
 * in a 64 KiB slab, about twice its length with the slab's unused tail).
 *
 * Those slabs are why a record held apart from its neighbours costs far more
 * than its share: it keeps its whole slab alive (581 KB of vectors, 64 KiB
 * of bodies). A listener that holds records far apart queues an unshared
 * copy instead (core/_listener-slabs.ts SPARSE_GAP), and retains the copy's body
 * in a buffer of its own. That is a guess from the gaps between records;
 * what it misses (records matched in runs far apart) is charged once their
 * slabs are sealed, as `sharedSlabs` tells the core (core/_slab-ledger.ts).
 */
import { totalmem } from "node:os";
import process from "node:process";
import { getHeapStatistics } from "node:v8";
import { createMemoryBudget, type Share } from "../core/budget.ts";
import { formatBytes } from "../core/byte-counts.ts";
import type { SlabSizes } from "../core/_slab-ledger.ts";
import type { SharedSlabs } from "../core/listener-options.ts";
import type { RegistryMemory } from "../core/registry.ts";
import { ENCODED_BODY, ENCODED_BODY_BUFFER, type ExitRecord, UNSHARED_COPY } from "../kernel/exit-record.ts";
import { isOpenSlab, ownStatsVector, SLOTS, type StatsVector } from "../kernel/stats-vector.ts";
import { vectorRecord } from "../kernel/vector-record.ts";
import { exitBody, isOpenBodySlab } from "../rpc/fast-binary/batch.ts";

/** A record's own objects (the record, its stats holders) and its Exit body's view and memo. */
const RECORD_BYTES = 400;
/** One stats vector: its slab slots, view and holder. */
const VECTOR_BYTES = 1280;
/** One TaskStats message (a record decoded as messages: 2^53 or more in a field), BigInts included. */
const MESSAGE_BYTES = 4096;
/** The Exit body every record gets once a binary stream or a retention encodes it. */
const EXIT_BODY_BYTES = 700;
/**
 * A retained payload's own objects: none for a view into a shared slab (the
 * retention keeps its buffer, offset and length), an ArrayBuffer for a body
 * copied out of an unshared record. Charged to every payload.
 */
const VIEW_BYTES = 160;

/** One stats vector's slots in its slab. */
const SLOT_BYTES = SLOTS * 8;

/** Free bytes a new listener needs to be of use: room for a batch or so of events. */
const LISTENER_RESERVE = 64 * 1024;

/** The largest default budget: a monitoring service sharing its host should not take more by default. */
const DEFAULT_CAP = 1024 ** 3;
/** The smallest default budget, for tiny containers. */
const DEFAULT_FLOOR = 16 * 1024 ** 2;

/** What queueing `r` costs a listener (the whole record: it is shared, so this overcounts). */
export function recordBytes(r: ExitRecord): number {
  const stats = r.pidVector !== undefined
    ? VECTOR_BYTES * (r.tgidVector === undefined ? 1 : 2)
    : MESSAGE_BYTES * (r.tgidStats === undefined ? 1 : 2);
  return RECORD_BYTES + stats + EXIT_BODY_BYTES;
}

/** What a retained Exit body costs: its objects (VIEW_BYTES), and twice its length for its slab (shared, with an unused tail). */
export function payloadBytes(p: Uint8Array): number {
  return VIEW_BYTES + 2 * p.byteLength;
}

// On a record: its unshared copy; on a copy: the copy itself (a slot VectorRecord declares).
const UNSHARED = UNSHARED_COPY;
type Memo = ExitRecord & { [UNSHARED]?: ExitRecord };
// A record with its Exit body memo (exitBody(): the view, and the slab it views), where one was encoded.
type Encoded = ExitRecord & { [ENCODED_BODY]?: Uint8Array; [ENCODED_BODY_BUFFER]?: ArrayBufferLike };

/** `r` with stats vectors of its own (made once per record), so holding it keeps no slab alive. */
export function unshareRecord(r: ExitRecord): ExitRecord {
  if (r.pidVector === undefined) return r; // TaskStats messages: no slab
  const memo = (r as Memo)[UNSHARED];
  if (memo !== undefined) return memo;
  const copy = vectorRecord({
    cpu: r.cpu,
    cpuSeq: r.cpuSeq,
    receivedAtMs: r.receivedAtMs,
    pid: r.pid,
    tgid: r.tgid,
    pidVector: ownVector(r.pidVector),
    tgidVector: r.tgidVector === undefined ? undefined : ownVector(r.tgidVector),
  });
  (r as Memo)[UNSHARED] = copy;
  (copy as Memo)[UNSHARED] = copy;
  return copy;
}

function ownVector(v: StatsVector): StatsVector {
  return ownStatsVector(new Float64Array(v.values), v.comm);
}

/** What a listener retains of a record: its Exit body (a view into a shared slab), copied out for an unshared record. */
export function retainPayload(r: ExitRecord): Uint8Array {
  const body = exitBody(r);
  return (r as Memo)[UNSHARED] === r ? body.slice() : body;
}

/**
 * The buffer `payload` views when it is the record's own Exit body (what retainPayload(r) gives for a record that is
 * not an unshared copy), read from the record rather than from the view: its `buffer` getter is a C++ call in V8
 * 11.3, and retention asks once per exit and listener. Undefined for any other payload (an unshared copy's body, a
 * buffer of its own; whatever another `retain` made), which retention then asks the view about: it vouches only for
 * the exact view exitBody() made, so a `retain` other than retainPayload cannot get another record's bytes replayed.
 */
export function retainedBuffer(r: ExitRecord, payload: Uint8Array): ArrayBufferLike | undefined {
  const m = r as Encoded;
  return m[ENCODED_BODY] === payload ? m[ENCODED_BODY_BUFFER] : undefined;
}

// A slab (an ArrayBuffer) is sealed once nothing more is put in it: until then the source or the encoder holds it
// anyway.
const buffers = (isOpen: (slab: object) => boolean): SlabSizes => ({
  bytesOf: (slab) => (slab as ArrayBufferLike).byteLength,
  sealed: (slab) => !isOpen(slab),
});
const vectorSlabs = buffers(isOpenSlab), bodySlabs = buffers(isOpenBodySlab);

/**
 * How records share slabs, for what the core charges a listener beyond its
 * events' shares (core/_slab-ledger.ts). A record keeps alive its stats
 * vectors' slab (and the tgid vector's, at a slab's end), of which its
 * charge pays its own slots, and, once any stream has encoded it, its Exit
 * body's slab, of which it pays twice the body's length (as EXIT_BODY_BYTES
 * and payloadBytes count a body). A retained body is a view into a bodies' slab.
 */
export const sharedSlabs: SharedSlabs<ExitRecord> = {
  records: {
    eachSlab(r, count) {
      const slab = r.slab; // undefined for a copy, or a record decoded as TaskStats messages
      if (slab !== undefined) count(slab, SLOT_BYTES * (r.slabVectors ?? 1), vectorSlabs);
      const tgid = r.tgidVector?.slab;
      if (tgid !== undefined && tgid !== slab) count(tgid, SLOT_BYTES, vectorSlabs);
      const m = r as Encoded;
      const buffer = m[ENCODED_BODY_BUFFER];
      if (buffer !== undefined) {
        const length = m[ENCODED_BODY]!.byteLength;
        if (length < buffer.byteLength) count(buffer, 2 * length, bodySlabs);
      }
    },
  },
  payloads: bodySlabs,
};

/** A default budget and how it was derived. */
export interface DefaultBudget {
  readonly bytes: number;
  readonly why: string;
}

/**
 * The default budget: a quarter of the memory this process may use (its
 * cgroup's limit when it has one, else the machine's), at most half the
 * JavaScript heap limit (queued records live on the heap, and the collector
 * needs room beside them), and at most 1 GiB; never below 16 MiB.
 */
export function defaultMemoryBudget(): DefaultBudget {
  const { bytes: memory, cgroup } = usableMemory();
  const heap = _heapLimit();
  const quarter = Math.floor(memory / 4), half = heap > 0 ? Math.floor(heap / 2) : Infinity;
  const bytes = Math.min(quarter, half, DEFAULT_CAP);
  const mib = wholeMib(bytes);
  const of = [
    `a quarter of ${formatBytes(memory)}${cgroup ? " (cgroup limit)" : ""} of memory`,
    ...(heap > 0 ? [`half the ${formatBytes(heap)} heap limit`] : []),
    "1 GiB",
  ];
  return { bytes: mib, why: `the least of ${of.join(", ")}; at least 16 MiB` };
}

// `bytes` rounded down to whole MiB, at least the floor: a budget as the default's reasons and warnings give it.
function wholeMib(bytes: number): number {
  return Math.max(DEFAULT_FLOOR, Math.floor(bytes / 1024 ** 2) * 1024 ** 2);
}

/** The memory this process may use: its cgroup's limit (memory.max) where one is below the machine's, else the machine's. */
export interface UsableMemory {
  readonly bytes: number;
  /** True when `bytes` is the cgroup's limit. */
  readonly cgroup: boolean;
}

/** This process's UsableMemory (the runtime reads the cgroup's limit, v1 or v2). */
export function usableMemory(): UsableMemory {
  const total = totalmem(), constrained = _constrainedMemory();
  return constrained > 0 && constrained < total
    ? { bytes: constrained, cgroup: true }
    : { bytes: total, cgroup: false };
}

/**
 * A warning for a --memory-budget above the memory the server may use:
 * such a budget never fills before the memory does, so it never refuses a
 * listener or drops an exit, and the kernel's OOM killer (of the machine or
 * of the cgroup) ends the server instead. Undefined for a budget that fits.
 */
export function budgetPastMemory(budget: number, memory: UsableMemory = usableMemory()): string | undefined {
  if (budget <= memory.bytes) return undefined;
  const what = memory.cgroup ? "this process's cgroup memory limit" : "this machine's memory";
  const quarter = wholeMib(memory.bytes / 4);
  return `--memory-budget ${formatBytes(budget)} exceeds ${what} (${formatBytes(memory.bytes)}): the budget will ` +
    "never refuse a listener or drop an exit before the kernel's OOM killer ends the server; set it well below " +
    `that (a quarter is ${formatBytes(quarter).replace(" ", "")}), or leave it unset for the default, which fits`;
}

/**
 * The memory budget's last eighth, kept for principals holding less than
 * their slice of it (core/budget.ts): a principal whose streams never read
 * stops at seven eighths and drops its own exits, while one that keeps up
 * still queues.
 */
export const BUDGET_RESERVE = { fraction: 1 / 8 } as const;

/** The registry's memory for createServer's options: the budget and the server's record and payload sizes. */
export function serverMemory(
  o: { readonly memoryBudget?: number | undefined; readonly memoryBudgetPerPrincipal?: Share | undefined },
): RegistryMemory<ExitRecord, Uint8Array> {
  return {
    budget: createMemoryBudget({
      limit: o.memoryBudget ?? defaultMemoryBudget().bytes,
      perOwner: o.memoryBudgetPerPrincipal,
      reserve: BUDGET_RESERVE,
    }),
    sizeOf: recordBytes,
    sizeOfPayload: payloadBytes,
    payloadBuffer: retainedBuffer,
    unshare: unshareRecord,
    slabs: sharedSlabs,
    reserve: LISTENER_RESERVE,
  };
}

// The cgroup limit where the runtime reports one (Node 19.6+); 0 when unknown.
function _constrainedMemory(): number {
  try {
    const p = process as { constrainedMemory?: () => number | undefined };
    return p.constrainedMemory?.() ?? 0;
  } catch {
    return 0;
  }
}

// The heap limit where the runtime reports one; 0 when unknown.
function _heapLimit(): number {
  try {
    return getHeapStatistics().heap_size_limit ?? 0;
  } catch {
    return 0;
  }
}
