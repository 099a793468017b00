/**
 * Binary encoding of a TaskStats for the stream's hot path. protobuf-es's
 * reflection-based toBinary() costs ~20 µs for this 71-field message, which
 * alone would cap a stream near 50k events/s. This writes the same bytes
 * directly, from the generated schema's field numbers and types: for a
 * message, an encoder compiled once (properties read by name, which V8 keeps
 * fast); for a stats vector (every record of the netlink and sim sources), a
 * loop over the fields' tags and slots. Varints are written into a scratch
 * buffer, and test/fast-encode.test.ts checks the output against toBinary()
 * byte for byte on arbitrary records.
 */
import { ScalarType } from "@bufbuild/protobuf";
import { type TaskStats, TaskStatsSchema } from "../../gen/taskwire/kernel/v1/taskstats_pb.ts";
import { SLOT, type StatsVector } from "../../kernel/stats-vector.ts";
import type { TaskStatsField } from "../../kernel/taskstats.ts";

/** Writes `n` (an integer 0..2^53) as a varint at `p`; returns the new position. */
export function writeVarint(b: Uint8Array, p: number, n: number): number {
  if (n >= 0x80000000) {
    // Past 31 bits: the low 28 bits as four bytes with integer ops, then the rest (one division, not one per byte).
    const lo = n % 0x10000000;
    b[p++] = (lo & 0x7f) | 0x80;
    b[p++] = ((lo >>> 7) & 0x7f) | 0x80;
    b[p++] = ((lo >>> 14) & 0x7f) | 0x80;
    b[p++] = ((lo >>> 21) & 0x7f) | 0x80;
    n = (n - lo) / 0x10000000;
    if (n >= 0x80000000) {
      while (n > 0x7f) {
        b[p++] = (n % 128) | 0x80;
        n = Math.floor(n / 128);
      }
      b[p++] = n;
      return p;
    }
  }
  while (n > 0x7f) {
    b[p++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  b[p++] = n;
  return p;
}

/** Writes a uint64 as a varint. */
export function writeVarint64(b: Uint8Array, p: number, v: bigint): number {
  const n = Number(v);
  if (n <= 0x1fffffffffffff) return writeVarint(b, p, n); // exact as a double up to 2^53
  while (v > 0x7fn) {
    b[p++] = Number(v & 0x7fn) | 0x80;
    v >>= 7n;
  }
  b[p++] = Number(v);
  return p;
}

const utf8 = new TextEncoder();

/** Writes a string with its length prefix (ASCII directly, anything else through TextEncoder). */
export function writeString(b: Uint8Array, p: number, s: string): number {
  const n = s.length;
  if (n < 128) {
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) break;
      b[p + 1 + i] = c;
    }
    if (i === n) {
      b[p] = n;
      return p + 1 + n;
    }
  }
  const bytes = utf8.encode(s);
  p = writeVarint(b, p, bytes.length);
  b.set(bytes, p);
  return p + bytes.length;
}

type Kind = "u32" | "u64" | "string";
const KINDS: Partial<Record<ScalarType, Kind>> = {
  [ScalarType.UINT32]: "u32",
  [ScalarType.UINT64]: "u64",
  [ScalarType.STRING]: "string",
};
const WRITERS: Record<Kind, string> = { u32: "writeVarint", u64: "writeVarint64", string: "writeString" };

// TaskStats' fields in number order, each with its kind and its tag (as constant byte writes for the compiled
// encoder): what both encoders below are made of.
const FIELDS = [...TaskStatsSchema.fields].sort((a, b) => a.number - b.number).map((f) => {
  const kind = f.fieldKind === "scalar" ? KINDS[f.scalar] : undefined;
  if (kind === undefined) throw new Error(`fast TaskStats encoding does not handle field ${f.name}; extend KINDS`);
  const tag = new Uint8Array(5);
  const tagLength = writeVarint(tag, 0, (f.number << 3) | (kind === "string" ? 2 : 0));
  const tagBytes = [...tag.subarray(0, tagLength)].map((byte) => `b[p++] = ${byte};`).join(" ");
  return { name: f.name, number: f.number, localName: f.localName, kind, tagBytes };
});

type Encode = (s: TaskStats, b: Uint8Array, p: number) => number;

// Compiled once: one `if (v !== undefined)` per field, properties read by
// name. Set optional fields are written even when zero, as toBinary() does.
function compile(): Encode {
  const lines = FIELDS.map((f) =>
    `v = s[${JSON.stringify(f.localName)}]; if (v !== undefined) { ${f.tagBytes} p = ${WRITERS[f.kind]}(b, p, v); }`
  );
  const body = `return function encodeTaskStats(s, b, p) { let v;\n${lines.join("\n")}\nreturn p; };`;
  return new Function("writeVarint", "writeVarint64", "writeString", body)(
    writeVarint,
    writeVarint64,
    writeString,
  ) as Encode;
}

type EncodeVector = (v: Float64Array, comm: string | undefined, b: Uint8Array, p: number) => number;

/** A run of numeric fields (in FIELDS' order): their tags (wire type 0) and stats vector slots. */
interface NumericFields {
  readonly tag: Int32Array;
  readonly slot: Int32Array;
}

function numericFields(fields: typeof FIELDS): NumericFields {
  const slotOf = (f: (typeof FIELDS)[number]) => {
    const slot = SLOT[f.localName as TaskStatsField];
    if (slot === undefined) throw new Error(`no stats vector slot for ${f.name}`);
    return slot;
  };
  return {
    tag: Int32Array.from(fields, (f) => f.number << 3),
    slot: Int32Array.from(fields, slotOf),
  };
}

// Set slots (not NaN) as varints from the numbers themselves; a varint under 2^31 written in place, larger ones
// through writeVarint. A loop over the fields' tags and slots: it was a straight-line function of 71 fields, which
// V8's optimizing compiler took 80-490 ms of a helper thread to compile, again for each caller it was inlined into,
// during a server's first storm (BENCHMARKS.md), for code no faster than this loop.
function writeNumeric(fields: NumericFields, v: Float64Array, b: Uint8Array, p: number): number {
  const { tag, slot } = fields;
  for (let i = 0; i < tag.length; i++) {
    let x = v[slot[i]!]!;
    if (x !== x) continue;
    p = writeTag(b, p, tag[i]!);
    if (x < 0x80000000) {
      while (x > 0x7f) {
        b[p++] = (x & 0x7f) | 0x80;
        x >>>= 7;
      }
      b[p++] = x;
    } else p = writeVarint(b, p, x);
  }
  return p;
}

// A tag of a field numbered under 2048: one byte or two.
function writeTag(b: Uint8Array, p: number, t: number): number {
  if (t < 0x80) b[p++] = t;
  else {
    b[p++] = (t & 0x7f) | 0x80;
    b[p++] = t >>> 7;
  }
  return p;
}

// The same bytes from a stats vector (toBinary of toTaskStats(v)): the numeric fields before ac_comm, ac_comm from
// its string, the numeric fields after it, each in field-number order as toBinary writes them.
function vectorEncoder(): EncodeVector {
  const at = FIELDS.findIndex((f) => f.kind === "string");
  if (at < 0 || FIELDS[at]!.localName !== "acComm" || FIELDS.some((f, i) => i !== at && f.kind === "string")) {
    throw new Error("stats vectors hold one string, ac_comm");
  }
  if (FIELDS.some((f) => f.number >= 1 << 11)) throw new Error("a field number past 2047 takes a 3-byte tag");
  const before = numericFields(FIELDS.slice(0, at)), after = numericFields(FIELDS.slice(at + 1));
  const commTag = (FIELDS[at]!.number << 3) | 2;
  const encodeStatsVector: EncodeVector = (v, comm, b, p) => {
    p = writeNumeric(before, v, b, p);
    if (comm !== undefined) p = writeString(b, writeTag(b, p, commTag), comm);
    return writeNumeric(after, v, b, p);
  };
  return encodeStatsVector;
}

const encode = compile();
const encodeVector = vectorEncoder();

/** A record's stats as a source gave them: a message, or a vector (stats-vector.ts). */
export type AnyStats = TaskStats | StatsVector;

const isVector = (s: AnyStats): s is StatsVector => "values" in s;

/** Bytes `s` can take encoded at most: 71 fields of tag (2) + varint (10), and the comm string. */
export function maxStatsSize(s: AnyStats): number {
  return 1024 + 3 * ((isVector(s) ? s.comm : s.acComm)?.length ?? 0);
}

/** Writes toBinary(TaskStatsSchema, s)'s bytes (of toTaskStats(s) for a vector) at `p` (room: maxStatsSize(s)); returns the end. */
export function writeStats(b: Uint8Array, p: number, s: AnyStats): number {
  return isVector(s) ? encodeVector(s.values, s.comm, b, p) : encode(s, b, p);
}
