/**
 * A schema-driven protobuf binary decoder for the stream's hot path.
 * protobuf-es's reflection-based fromBinary() spends ~20 µs on one 71-field
 * TaskStats (a linear field lookup per field, reflective sets), which caps a
 * client near 40k events/s. This decoder plans each message type once from
 * its generated descriptor (field number -> how to read and where to put it)
 * and produces the same plain objects fromBinary() does: same properties,
 * same oneof shape, unknown fields kept in `$unknown`, bytes aliasing the
 * input as protobuf-es does. test/fast-decode.test.ts checks it against
 * fromBinary() on arbitrary messages.
 *
 * A message type using anything outside the plan (maps, repeated scalars,
 * groups, closed enums) is handed to fromBinary() whole, and any malformed
 * input makes the caller fall back to fromBinary() for the whole message, so
 * errors are protobuf-es's own.
 */
import {
  create,
  type DescField,
  type DescMessage,
  fromBinary,
  type MessageShape,
  ScalarType,
} from "@bufbuild/protobuf";
import { type Build, builder, type Fields, type Unknown } from "./_message-builder.ts";

/** Read position in a buffer. */
interface Cursor {
  buf: Uint8Array;
  pos: number;
}

const utf8 = new TextDecoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/** The input does not match the plan; the caller decodes with fromBinary() instead. */
class Malformed extends Error {}

function varint(c: Cursor): number {
  const buf = c.buf;
  let b = buf[c.pos++]!;
  if (b < 0x80) return b;
  let n = b & 0x7f, mul = 128;
  for (let i = 1; i < 10; i++) {
    b = buf[c.pos++]!;
    if (b === undefined) throw new Malformed();
    // Bits past 2^53 only matter to 64-bit fields, which use u64(); 32-bit ones keep the low 32.
    if (i < 5) n += (b & 0x7f) * mul;
    if (b < 0x80) return n;
    mul *= 128;
  }
  throw new Malformed();
}

function u64(c: Cursor): bigint {
  const buf = c.buf;
  let n = 0, mul = 1;
  for (let i = 0; i < 7; i++) {
    const b = buf[c.pos++];
    if (b === undefined) throw new Malformed();
    n += (b & 0x7f) * mul; // exact: at most 49 bits
    if (b < 0x80) return BigInt(n);
    mul *= 128;
  }
  let big = BigInt(n), shift = 49n;
  for (let i = 7; i < 10; i++) {
    const b = buf[c.pos++];
    if (b === undefined) throw new Malformed();
    big |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) return BigInt.asUintN(64, big);
    shift += 7n;
  }
  throw new Malformed();
}

function lengthDelimited(c: Cursor): Uint8Array {
  const len = varint(c), start = c.pos;
  c.pos += len;
  if (c.pos > c.buf.length) throw new Malformed();
  return c.buf.subarray(start, c.pos);
}

/**
 * How many length-delimited fields numbered `field` `buf` holds at its top
 * level, counted from the wire without decoding or allocating (a message's
 * size bound then bounds the work); malformed wire ends the count, and the
 * decoder says what is wrong with it.
 */
export function countLengthDelimited(buf: Uint8Array, field: number): number {
  const c: Cursor = { buf, pos: 0 };
  let n = 0;
  try {
    while (c.pos < buf.length) {
      const tag = varint(c), wire = tag & 7;
      if (wire === 0) varint(c);
      else if (wire === 1 || wire === 5) c.pos += wire === 1 ? 8 : 4;
      else if (wire !== 2) break;
      else {
        const len = varint(c); // read before c.pos is: `c.pos += varint(c)` would add to the position before it
        c.pos += len;
        if (c.pos > buf.length) break;
        if (tag >>> 3 === field) n++;
      }
    }
  } catch (err) {
    if (!(err instanceof Malformed)) throw err;
  }
  return n;
}

function fixed(c: Cursor, size: 4 | 8): DataView {
  const start = c.pos;
  c.pos += size;
  if (c.pos > c.buf.length) throw new Malformed();
  return new DataView(c.buf.buffer, c.buf.byteOffset + start, size);
}

type Read = (c: Cursor) => unknown;

const u32 = (c: Cursor): number => varint(c) >>> 0;

const zigzag32 = (n: number): number => (n >>> 1) ^ -(n & 1);

// Each scalar type's reader and wire type, as protobuf-es's BinaryReader reads them.
const SCALARS: Record<ScalarType, [wireType: number, read: Read]> = {
  [ScalarType.DOUBLE]: [1, (c) => fixed(c, 8).getFloat64(0, true)],
  [ScalarType.FLOAT]: [5, (c) => fixed(c, 4).getFloat32(0, true)],
  [ScalarType.INT64]: [0, (c) => BigInt.asIntN(64, u64(c))],
  [ScalarType.UINT64]: [0, u64],
  [ScalarType.INT32]: [0, (c) => varint(c) | 0],
  [ScalarType.FIXED64]: [1, (c) => fixed(c, 8).getBigUint64(0, true)],
  [ScalarType.FIXED32]: [5, (c) => fixed(c, 4).getUint32(0, true)],
  [ScalarType.BOOL]: [0, (c) => varint(c) !== 0],
  [ScalarType.STRING]: [2, (c) => utf8.decode(lengthDelimited(c))],
  [ScalarType.BYTES]: [2, lengthDelimited],
  [ScalarType.UINT32]: [0, u32],
  [ScalarType.SFIXED32]: [5, (c) => fixed(c, 4).getInt32(0, true)],
  [ScalarType.SFIXED64]: [1, (c) => fixed(c, 8).getBigInt64(0, true)],
  [ScalarType.SINT32]: [0, (c) => zigzag32(varint(c) >>> 0)],
  [ScalarType.SINT64]: [0, (c) => {
    const u = u64(c);
    return (u >> 1n) ^ -(u & 1n);
  }],
};

const strictString: Read = (c) => {
  try {
    return utf8Strict.decode(lengthDelimited(c));
  } catch (err) {
    if (err instanceof Malformed) throw err;
    throw new Malformed(); // fromBinary() reports invalid UTF-8 in its own words
  }
};

/** How one field number is read and where its value goes (one shape for every slot: monomorphic loads). */
class Slot {
  constructor(
    readonly wireType: number,
    /** Index into the message's value array (a oneof's members share one). */
    readonly index: number,
    /** A oneof member's case name, or "". */
    readonly oneofCase: string,
    /** A scalar's reader, or null for a message field. */
    readonly read: Read | null,
    /** A message field's plan, or null. */
    readonly message: Plan | null,
    readonly repeated: boolean,
  ) {}
}

/** A message type's decoding plan: slots by field number and a builder, or fromBinary() for a type outside the plan. */
interface Plan {
  readonly desc: DescMessage;
  slots: (Slot | undefined)[];
  size: number;
  build: Build;
  whole: boolean;
}

const plans = new WeakMap<DescMessage, Plan>();

function planFor(desc: DescMessage): Plan {
  let plan = plans.get(desc);
  if (plan !== undefined) return plan;
  plan = { desc, slots: [], size: desc.members.length, build: () => ({}), whole: false };
  plans.set(desc, plan); // before the fields: message types may be recursive
  // Messages with default values keep them on a prototype (proto2): fromBinary()'s job.
  if (Object.getPrototypeOf(create(desc)) !== Object.prototype) plan.whole = true;
  desc.members.forEach((member, index) => {
    for (const f of member.kind === "oneof" ? member.fields : [member]) {
      const slot = plan.whole ? undefined : slotFor(f, index);
      if (slot === undefined || f.number > 4096) plan.whole = true;
      else plan.slots[f.number] = slot;
    }
  });
  if (!plan.whole) plan.build = builder(desc);
  return plan;
}

function slotFor(f: DescField, index: number): Slot | undefined {
  const oneofCase = f.oneof === undefined ? "" : f.localName;
  switch (f.fieldKind) {
    case "scalar": {
      if (f.longAsString) return undefined;
      const [wireType, read] = SCALARS[f.scalar];
      const strict = f.scalar === ScalarType.STRING && f.utf8Validation;
      return new Slot(wireType, index, oneofCase, strict ? strictString : read, null, false);
    }
    case "enum":
      return f.enum.open ? new Slot(0, index, oneofCase, SCALARS[ScalarType.INT32][1], null, false) : undefined;
    case "message":
      return f.delimitedEncoding ? undefined : new Slot(2, index, oneofCase, null, planFor(f.message), false);
    case "list":
      return f.listKind === "message" && !f.delimitedEncoding
        ? new Slot(2, index, "", null, planFor(f.message), true)
        : undefined;
    default:
      return undefined; // maps
  }
}

function skip(c: Cursor, wireType: number): void {
  switch (wireType) {
    case 0:
      varint(c);
      return;
    case 1:
      fixed(c, 8);
      return;
    case 2:
      lengthDelimited(c);
      return;
    case 5:
      fixed(c, 4);
      return;
    default:
      throw new Malformed(); // groups and invalid wire types: fromBinary() decides
  }
}

function submessage(plan: Plan, c: Cursor): Fields {
  const bytes = lengthDelimited(c);
  if (plan.whole) return fromBinary(plan.desc, bytes) as unknown as Fields;
  return decodeFields(plan, { buf: bytes, pos: 0 });
}

/** Reads a message-typed field's value at `c` into `values`. */
function readMessageSlot(slot: Slot, values: unknown[], c: Cursor): void {
  const i = slot.index;
  if (slot.repeated) {
    const list = (values[i] ??= []) as unknown[];
    list.push(submessage(slot.message!, c));
    return;
  }
  // A singular message field seen twice must merge: fromBinary() does that.
  if (values[i] !== undefined && (slot.oneofCase === "" || (values[i] as { case: string }).case === slot.oneofCase)) {
    throw new Malformed();
  }
  const value = submessage(slot.message!, c);
  values[i] = slot.oneofCase === "" ? value : { case: slot.oneofCase, value };
}

function decodeFields(plan: Plan, c: Cursor): Fields {
  const end = c.buf.length, slots = plan.slots;
  const values: unknown[] = new Array(plan.size);
  let unknown: Unknown | undefined;
  let set = 0;
  while (c.pos < end) {
    const at = c.pos;
    const tag = varint(c);
    // A tag is a uint32 varint: fromBinary() refuses a longer or larger one ("varint overflows uint32"), so
    // this hands such bytes to it (Malformed) rather than reading a wrapped field number.
    if (tag > 0xffffffff || c.pos - at > 5) throw new Malformed();
    const no = tag >>> 3, wireType = tag & 7;
    const slot = slots[no];
    if (slot === undefined || slot.wireType !== wireType) {
      // An unknown field, or a known one on an unexpected wire type (e.g. packed): let fromBinary() judge the latter.
      if (slot !== undefined || no === 0) throw new Malformed();
      const start = c.pos;
      skip(c, wireType);
      (unknown ??= []).push({ no, wireType, data: c.buf.subarray(start, c.pos) });
      continue;
    }
    const i = slot.index;
    if (values[i] === undefined) set++;
    if (slot.read === null) readMessageSlot(slot, values, c);
    // Direct calls for TaskStats' two types keep those call sites monomorphic.
    else if (slot.oneofCase === "") values[i] = slot.read === u64 ? u64(c) : slot.read === u32 ? u32(c) : slot.read(c);
    else values[i] = { case: slot.oneofCase, value: slot.read(c) };
  }
  return plan.build(values, unknown, set);
}

/** fromBinary(desc, bytes), planned once per message type. */
export function decodeFast<Desc extends DescMessage>(desc: Desc, bytes: Uint8Array): MessageShape<Desc> {
  const plan = planFor(desc);
  if (!plan.whole) {
    try {
      return decodeFields(plan, { buf: bytes, pos: 0 }) as unknown as MessageShape<Desc>;
    } catch (err) {
      if (!(err instanceof Malformed)) throw err;
    }
  }
  return fromBinary(desc, bytes) as MessageShape<Desc>;
}

/** One field as protobuf-es keeps an unknown field: the bytes after its tag. */
export interface WireField {
  readonly no: number;
  readonly wireType: number;
  readonly data: Uint8Array;
}

/**
 * Builds a `desc` message from fields some other message type left unknown
 * (a stream read as google.protobuf.Empty delivers every field this way),
 * decoding them as decodeFast() would.
 */
export function decodeFastFromFields<Desc extends DescMessage>(
  desc: Desc,
  fields: readonly WireField[],
): MessageShape<Desc> {
  let size = 0;
  for (const f of fields) size += tagSize(f.no, f.wireType) + f.data.length;
  const bytes = new Uint8Array(size);
  let pos = 0;
  for (const f of fields) {
    pos = writeTag(bytes, pos, f.no, f.wireType);
    bytes.set(f.data, pos);
    pos += f.data.length;
  }
  return decodeFast(desc, bytes);
}

function tagSize(no: number, wireType: number): number {
  let tag = no * 8 + wireType, n = 1;
  while (tag >= 128) {
    tag = Math.floor(tag / 128);
    n++;
  }
  return n;
}

function writeTag(out: Uint8Array, pos: number, no: number, wireType: number): number {
  let tag = no * 8 + wireType;
  while (tag >= 128) {
    out[pos++] = (tag % 128) | 0x80;
    tag = Math.floor(tag / 128);
  }
  out[pos++] = tag;
  return pos;
}
