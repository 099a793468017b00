/**
 * Decoding struct taskstats bytes into a TaskStats message, by version and
 * by length. The struct is append-only except version 15, which inserted each
 * delay class's *_delay_max and *_delay_min right after its *_delay_total;
 * version 16 moved them all to the end (commit "taskstats: fix struct
 * taskstats breaks backward compatibility since version 15"). A field exists
 * when the struct is long enough to hold it; the rest stay unset. Pure.
 */
import type { TaskStats } from "../gen/taskwire/kernel/v1/taskstats_pb.ts";
import { createStatsVector, SLOT, type StatsVector } from "./stats-vector.ts";
import { DELAY_CLASSES, type FieldSpec, type FieldType, TASKSTATS_FIELDS, TS_COMM_LEN } from "./taskstats.ts";

const SIZE: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, u64: 8, comm: TS_COMM_LEN };
const ALIGN: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, u64: 8, comm: 1 };

/** Lays out fields in order with C's natural alignment (ac_uid is declared aligned(8)). */
export function layout(order: readonly { name: FieldSpec["name"]; type: FieldType }[]): FieldSpec[] {
  let off = 0;
  return order.map((f) => {
    const align = f.name === "acUid" ? 8 : ALIGN[f.type];
    off = Math.ceil(off / align) * align;
    const spec = { name: f.name, type: f.type, offset: off };
    off += SIZE[f.type];
    return spec;
  });
}

/** Field order of version 15: max/min pairs follow their class's total. */
function v15Order(): FieldSpec[] {
  const isMaxMin = (f: FieldSpec) => /Delay(Max|Min)$/.test(f.name);
  const byName = new Map(TASKSTATS_FIELDS.map((f) => [f.name, f]));
  const out: FieldSpec[] = [];
  for (const f of TASKSTATS_FIELDS.filter((x) => !isMaxMin(x))) {
    out.push(f);
    const cls = DELAY_CLASSES.find((c) => f.name === `${c}DelayTotal`);
    if (cls !== undefined) {
      out.push(byName.get(`${cls}DelayMax` as FieldSpec["name"])!, byName.get(`${cls}DelayMin` as FieldSpec["name"])!);
    }
  }
  return out;
}

/** Layouts by struct version: 15 has its own; every other version is a prefix of 16's. */
export const LAYOUT_V16: readonly FieldSpec[] = layout(TASKSTATS_FIELDS);
export const LAYOUT_V15: readonly FieldSpec[] = layout(v15Order());

/** The bytes a layout needs to hold `field`. */
function end(f: FieldSpec): number {
  return f.offset + SIZE[f.type];
}

const utf8 = new TextDecoder();

// Exits come in runs of the same few commands: the last string decoded for
// each hash bucket is reused when its bytes match, so the usual comm costs
// no TextDecoder call and no new string.
const COMM_CACHE = 256;
const commStrings: (string | undefined)[] = new Array<string | undefined>(COMM_CACHE).fill(undefined);

function readComm(bytes: Uint8Array, offset: number): string {
  let end = offset, h = 0;
  for (; end < offset + TS_COMM_LEN && bytes[end] !== 0; end++) h = (Math.imul(h, 31) + bytes[end]!) | 0;
  const slot = (h ^ (h >>> 8)) & (COMM_CACHE - 1);
  const cached = commStrings[slot];
  if (cached !== undefined && sameAscii(cached, bytes, offset, end)) return cached;
  return (commStrings[slot] = utf8.decode(bytes.subarray(offset, end)));
}

function sameAscii(s: string, bytes: Uint8Array, start: number, end: number): boolean {
  if (s.length !== end - start) return false;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) !== bytes[start + i]) return false;
  return true;
}

type Reader = (dv: DataView, bytes: Uint8Array, out: Record<string, unknown>) => void;

// One reader per field, built once per layout: decoding is the hot path of
// the netlink source (every exit record), so it does no per-field dispatch.
function compile(fields: readonly FieldSpec[]): { need: number; read: Reader }[] {
  return fields.map((f) => {
    const { name, offset } = f;
    const read: Reader = f.type === "u64"
      ? (dv, _, o) => {
        o[name] = dv.getBigUint64(offset, true);
      }
      : f.type === "u32"
      ? (dv, _, o) => {
        o[name] = dv.getUint32(offset, true);
      }
      : f.type === "u16"
      ? (dv, _, o) => {
        o[name] = dv.getUint16(offset, true);
      }
      : f.type === "u8"
      ? (dv, _, o) => {
        o[name] = dv.getUint8(offset);
      }
      : (_, b, o) => {
        o[name] = readComm(b, offset);
      };
    return { need: end(f), read };
  });
}

const READ_V16 = compile(LAYOUT_V16);
const READ_V15 = compile(LAYOUT_V15);

/** Decodes a TASKSTATS_TYPE_STATS payload. Throws RangeError when it is too short to hold even the version. */
export function decodeTaskStats(bytes: Uint8Array): TaskStats {
  if (bytes.byteLength < 2) throw new RangeError(`struct taskstats of ${bytes.byteLength} bytes has no version field`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const readers = dv.getUint16(0, true) === 15 ? READ_V15 : READ_V16;
  const out: Record<string, unknown> = { $typeName: "taskwire.kernel.v1.TaskStats" };
  const len = bytes.byteLength;
  for (const r of readers) if (r.need <= len) r.read(dv, bytes, out);
  return out as TaskStats;
}

type DecodeAt = (dv: DataView, bytes: Uint8Array, base: number, len: number, v: StatsVector) => boolean;

/** One field type's fields of a layout, in offset order: where each is read, and its vector slot. */
interface Fields {
  readonly offset: Int32Array;
  readonly slot: Int32Array;
}

function fieldsOf(layout: readonly FieldSpec[], type: FieldType): Fields {
  const fields = layout.filter((f) => f.type === type).sort((a, b) => a.offset - b.offset);
  return {
    offset: Int32Array.from(fields, (f) => f.offset),
    slot: Int32Array.from(fields, (f) => SLOT[f.name]),
  };
}

// The same fields into a stats vector: numbers, no BigInt, a loop per field
// type over the layout's offsets and slots (no closure or call per field).
// It was a straight-line function of 71 reads compiled per layout; V8's
// optimizing compiler took 150-190 ms of a helper thread for it, and again
// for each caller it was inlined into, during a server's first storm (see
// BENCHMARKS.md), for no faster code. A u64 of 2^53 or more has no exact
// double: the function then returns false and the caller decodes the record
// as a TaskStats instead. Fields past `len` stay unset: each loop stops at the
// first field the struct is too short for (fields are in offset order).
function vectorDecoder(layout: readonly FieldSpec[]): DecodeAt {
  const u64 = fieldsOf(layout, "u64"), u32 = fieldsOf(layout, "u32");
  const u16 = fieldsOf(layout, "u16"), u8 = fieldsOf(layout, "u8");
  const comm = layout.find((f) => f.type === "comm");
  const commOffset = comm?.offset ?? -1, commEnd = comm === undefined ? Infinity : end(comm);
  const decodeStatsVectorAt: DecodeAt = (dv, bytes, base, len, v) => {
    const x = v.values;
    let exact = true;
    for (let i = 0; i < u64.offset.length; i++) {
      const at = u64.offset[i]!;
      if (at + 8 > len) break;
      const hi = dv.getUint32(base + at + 4, true);
      x[u64.slot[i]!] = hi * 4294967296 + dv.getUint32(base + at, true);
      if (hi >= 0x200000) exact = false;
    }
    for (let i = 0; i < u32.offset.length && u32.offset[i]! + 4 <= len; i++) {
      x[u32.slot[i]!] = dv.getUint32(base + u32.offset[i]!, true);
    }
    for (let i = 0; i < u16.offset.length && u16.offset[i]! + 2 <= len; i++) {
      x[u16.slot[i]!] = dv.getUint16(base + u16.offset[i]!, true);
    }
    for (let i = 0; i < u8.offset.length && u8.offset[i]! < len; i++) {
      x[u8.slot[i]!] = dv.getUint8(base + u8.offset[i]!);
    }
    if (commEnd <= len) v.comm = readComm(bytes, base + commOffset);
    return exact;
  };
  return decodeStatsVectorAt;
}

const VECTOR_V16 = vectorDecoder(LAYOUT_V16);
const VECTOR_V15 = vectorDecoder(LAYOUT_V15);

/**
 * Decodes a TASKSTATS_TYPE_STATS payload into a stats vector (the netlink
 * source's hot path), or undefined when a 64-bit field is 2^53 or more (no
 * exact double: decode it with decodeTaskStats). Fields the struct is too
 * short for stay unset, as with decodeTaskStats.
 */
export function decodeStatsVector(bytes: Uint8Array): StatsVector | undefined {
  return decodeStatsVectorAt(
    new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    bytes,
    0,
    bytes.byteLength,
  );
}

/**
 * decodeStatsVector of the `len` bytes at `base` in `dv` (`bytes` views the
 * same buffer from the same origin): no view per record.
 */
export function decodeStatsVectorAt(
  dv: DataView,
  bytes: Uint8Array,
  base: number,
  len: number,
): StatsVector | undefined {
  if (len < 2) throw new RangeError(`struct taskstats of ${len} bytes has no version field`);
  const v = createStatsVector();
  return (dv.getUint16(base, true) === 15 ? VECTOR_V15 : VECTOR_V16)(dv, bytes, base, len, v) ? v : undefined;
}

/** Encodes a TaskStats as struct bytes of a version's layout (for tests and the simulator's fixtures). */
export function encodeTaskStats(stats: TaskStats, size: number, version = stats.version ?? 16): Uint8Array {
  const bytes = new Uint8Array(size);
  const dv = new DataView(bytes.buffer);
  for (const f of version === 15 ? LAYOUT_V15 : LAYOUT_V16) {
    const v = stats[f.name];
    if (v === undefined || end(f) > size) continue;
    if (f.type === "u64") dv.setBigUint64(f.offset, v as bigint, true);
    else if (f.type === "u32") dv.setUint32(f.offset, v as number, true);
    else if (f.type === "u16") dv.setUint16(f.offset, v as number, true);
    else if (f.type === "u8") dv.setUint8(f.offset, v as number);
    else bytes.set(new TextEncoder().encode(v as string).subarray(0, TS_COMM_LEN - 1), f.offset);
  }
  return bytes;
}
