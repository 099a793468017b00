/**
 * struct taskstats as a vector of numbers: one slot per field of
 * TASKSTATS_FIELDS (NaN: not set), with ac_comm beside it. The sources fill
 * these instead of TaskStats messages (the sim computes them, the netlink
 * reader decodes kernel structs into them): no BigInt and no garbage per
 * field, so a record costs one small view into a shared buffer, and an
 * encoder writes protobuf straight from the numbers.
 * The TaskStats message is built only when something asks for it (JSON
 * streams, field masks, filters). Slots hold integers below 2^53. No I/O;
 * the only side effect is the slab supply's timer (made-ahead.ts).
 */
import { Buffer } from "node:buffer";
import type { TaskStats } from "../gen/taskwire/kernel/v1/taskstats_pb.ts";
import { madeAhead } from "./made-ahead.ts";
import { TASKSTATS_FIELDS, type TaskStatsField } from "./taskstats.ts";

/** One record's stats as numbers. */
export interface StatsVector {
  /** Field values by TASKSTATS_FIELDS index; NaN where the field is not set. ac_comm's slot stays NaN. */
  readonly values: Float64Array;
  /** ac_comm, or undefined when not set. */
  comm: string | undefined;
  /** The shared slab `values` views (its buffer); undefined for a vector with a buffer of its own. */
  readonly slab?: object | undefined;
}

// The slab is kept in a private field behind a getter: an own property would make every deep comparison of two
// records (tests' toEqual) walk both 581 KB slabs.
class Vector implements StatsVector {
  comm: string | undefined = undefined;
  readonly #slab: object | undefined;
  constructor(readonly values: Float64Array, slab: object | undefined) {
    this.#slab = slab;
  }

  get slab(): object | undefined {
    return this.#slab;
  }
}

/** A vector over `values` of its own (a copy that shares no slab). */
export function ownStatsVector(values: Float64Array, comm: string | undefined): StatsVector {
  const v = new Vector(values, undefined);
  v.comm = comm;
  return v;
}

/** Slot index of each field. */
export const SLOT = Object.freeze(Object.fromEntries(TASKSTATS_FIELDS.map((f, i) => [f.name, i]))) as Readonly<
  Record<TaskStatsField, number>
>;

/** Number of slots. */
export const SLOTS = TASKSTATS_FIELDS.length;

// Vectors are views into shared slabs: a Float64Array with a buffer of its
// own costs a native allocation each. A slab lives while any view into it does.
// A slab's slots are set to NaN (unset) once, as it is made: a vector is handed out once and never reused, and
// one fill of the whole slab costs far less than a fill per vector (a sixth of the sim's time per exit).
// 1,024 vectors (568 KB) a slab, each made ahead of need in a timer task of its own (made-ahead.ts). Made inline,
// a slab took 80-400 us (past malloc's mmap threshold: fresh pages, zeroed, then filled), and the record that
// needed it waited that long: at 10,000 exits/s one tick in a hundred, which is a stream's p99 (see
// BENCHMARKS.md). Slabs of 128 waited less, but cost three times as much per byte in the server (each one's pages
// faulted in afresh): 0.2-0.6 us more per record on the main thread at the netlink bench's rate.
const SLAB_VECTORS = 1024;
const nextSlab = madeAhead(makeSlab);

// A slab's memory is taken uninitialised (Buffer.allocUnsafeSlow: malloc, where a typed array's constructor takes
// calloc), because the NaN fill writes every byte of it anyway: the zeroing was a second pass over 568 KB, half of
// a slab's cost (303 -> 155 us a slab alone, 0.15 us a record). Nothing of what the memory held before (another
// client's records, freed) can be read: the fill comes before the slab is handed out.
function makeSlab(): Float64Array {
  const slots = SLOTS * SLAB_VECTORS;
  return new Float64Array(Buffer.allocUnsafeSlow(slots * Float64Array.BYTES_PER_ELEMENT).buffer, 0, slots).fill(NaN);
}
// The first vector takes the first slab (none is made on import).
let slab: Float64Array = new Float64Array(0);
let slabBuffer: ArrayBufferLike = slab.buffer;
let next = SLAB_VECTORS;

/** A vector with every field unset. */
export function createStatsVector(): StatsVector {
  if (next === SLAB_VECTORS) {
    slab = nextSlab();
    slabBuffer = slab.buffer;
    next = 0;
  }
  const values = slab.subarray(next * SLOTS, ++next * SLOTS);
  return new Vector(values, slabBuffer);
}

/** Whether vectors are still handed out from `buffer` (a vector's `slab`): its slab is not yet full. */
export function isOpenSlab(buffer: object): boolean {
  return buffer === slabBuffer;
}

/** A copy, as memcpy() of signal->stats makes one. */
export function copyStatsVector(v: StatsVector): StatsVector {
  const out = createStatsVector();
  out.values.set(v.values);
  out.comm = v.comm;
  return out;
}

type Build = (v: Float64Array, comm: string | undefined) => TaskStats;

// Compiled once from the field table: every field set (a thread's record)
// becomes one object literal; otherwise (a group's sum) only the set fields
// are added, by name. Computed property names would push V8 objects into slow
// dictionary mode.
function compile(): Build {
  const value = (i: number) => (TASKSTATS_FIELDS[i]!.type === "u64" ? `BigInt(v[${i}])` : `v[${i}]`);
  const all = TASKSTATS_FIELDS.map((f, i) => `${JSON.stringify(f.name)}: ${f.type === "comm" ? "comm" : value(i)}`);
  const some = TASKSTATS_FIELDS.map((f, i) =>
    f.type === "comm"
      ? `if (comm !== undefined) o[${JSON.stringify(f.name)}] = comm;`
      : `if (v[${i}] === v[${i}]) o[${JSON.stringify(f.name)}] = ${value(i)};`
  );
  const everySet = TASKSTATS_FIELDS.map((f, i) => (f.type === "comm" ? "comm !== undefined" : `v[${i}] === v[${i}]`))
    .join(" && ");
  const body = `return function toTaskStats(v, comm) {
    if (${everySet}) return { $typeName: "taskwire.kernel.v1.TaskStats", ${all.join(", ")} };
    const o = { $typeName: "taskwire.kernel.v1.TaskStats" };
    ${some.join("\n")}
    return o;
  };`;
  return new Function(body)() as Build;
}

const build = compile();

/** The vector as a TaskStats message (u64 fields as bigint, unset fields absent). */
export function toTaskStats(v: StatsVector): TaskStats {
  return build(v.values, v.comm);
}
