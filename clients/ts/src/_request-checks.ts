/**
 * A request's numeric fields, checked against their protobuf types before it
 * is sent. protobuf-es refuses a value its type cannot hold only as it
 * encodes the request inside connect-es's transport, which reports it as
 * "[internal] serialize binary: ... invalid uint32: -1": neither the field
 * nor what it takes, and an internal error for the caller's mistake. The
 * bounds come from the generated schema's field types, so every method is
 * covered as it is, a new field or method included.
 */
import { type DescField, type DescMessage, ScalarType } from "@bufbuild/protobuf";

/** An integer type's range; a 64-bit one takes a bigint or a decimal string too. */
interface Bounds {
  readonly lo: bigint;
  readonly hi: bigint;
  readonly type: string;
  readonly wide: boolean;
}

const INT32: Bounds = { lo: -(2n ** 31n), hi: 2n ** 31n - 1n, type: "int32", wide: false };
const UINT32: Bounds = { lo: 0n, hi: 2n ** 32n - 1n, type: "uint32", wide: false };
const INT64: Bounds = { lo: -(2n ** 63n), hi: 2n ** 63n - 1n, type: "int64", wide: true };
const UINT64: Bounds = { lo: 0n, hi: 2n ** 64n - 1n, type: "uint64", wide: true };

// An enum's value goes on the wire as an int32.
const ENUM: Bounds = { ...INT32, type: "enum, an int32" };

// The integer types and their ranges (float, double, bool, string and bytes are left to protobuf-es).
const BOUNDS: Partial<Record<ScalarType, Bounds>> = {
  [ScalarType.INT32]: INT32,
  [ScalarType.SINT32]: { ...INT32, type: "sint32" },
  [ScalarType.SFIXED32]: { ...INT32, type: "sfixed32" },
  [ScalarType.UINT32]: UINT32,
  [ScalarType.FIXED32]: { ...UINT32, type: "fixed32" },
  [ScalarType.INT64]: INT64,
  [ScalarType.SINT64]: { ...INT64, type: "sint64" },
  [ScalarType.SFIXED64]: { ...INT64, type: "sfixed64" },
  [ScalarType.UINT64]: UINT64,
  [ScalarType.FIXED64]: { ...UINT64, type: "fixed64" },
};

/**
 * Throws when a numeric field of `input` (a `schema` message's init or
 * message) does not fit its type: a TypeError for a value of another type
 * (a 32-bit field takes a number; a 64-bit one a bigint, a number or a
 * decimal string), a RangeError for one out of range or not an integer.
 * `what` (the method) and the field's path start the message.
 */
export function checkRequest(what: string, schema: DescMessage, input: unknown): void {
  checkMessage(what, schema, input, "");
}

function checkMessage(what: string, schema: DescMessage, input: unknown, path: string): void {
  if (typeof input !== "object" || input === null) return; // protobuf-es says what a message takes
  const fields = input as Record<string, unknown>;
  for (const f of schema.fields) checkField(what, f, valueOf(fields, f), path + f.localName);
}

// A field's value in an init shape; a oneof member's is under its oneof, as { case, value }.
function valueOf(fields: Record<string, unknown>, f: DescField): unknown {
  if (f.oneof === undefined) return fields[f.localName];
  const set = fields[f.oneof.localName] as { case?: unknown; value?: unknown } | undefined;
  return set?.case === f.localName ? set.value : undefined;
}

function checkField(what: string, f: DescField, v: unknown, name: string): void {
  if (v === undefined || v === null) return;
  switch (f.fieldKind) {
    case "scalar":
      return checkScalar(what, BOUNDS[f.scalar], v, name);
    case "enum":
      return checkScalar(what, ENUM, v, name);
    case "message":
      return checkMessage(what, f.message, v, `${name}.`);
    case "list":
      if (!Array.isArray(v)) return; // protobuf-es says a list takes an array
      v.forEach((item, i) => {
        const at = `${name}[${i}]`;
        if (f.listKind === "message") checkMessage(what, f.message, item, `${at}.`);
        else checkScalar(what, f.listKind === "enum" ? ENUM : BOUNDS[f.scalar], item, at);
      });
      return;
    case "map":
      return; // no request has a map
  }
}

function checkScalar(what: string, bounds: Bounds | undefined, v: unknown, name: string): void {
  if (bounds === undefined) return;
  const range = `an integer in ${bounds.lo}..${bounds.hi} (${bounds.type})`;
  const n = integerOf(v, bounds.wide);
  if (n === undefined) {
    const takes = bounds.wide ? "a bigint, a number or a decimal string" : "a number";
    throw new TypeError(`${what}: ${name} must be ${takes}, ${range}; got ${shown(v)}`);
  }
  if (n === null || n < bounds.lo || n > bounds.hi) {
    throw new RangeError(`${what}: ${name} must be ${range}, got ${shown(v)}`);
  }
}

// The integer `v` holds; null when it is of a type the field takes but no integer; undefined for another type.
function integerOf(v: unknown, wide: boolean): bigint | null | undefined {
  if (typeof v === "number") return Number.isInteger(v) ? BigInt(v) : null;
  if (!wide) return undefined;
  if (typeof v === "bigint") return v;
  if (typeof v === "string") return /^-?\d{1,25}$/.test(v) ? BigInt(v) : null;
  return undefined;
}

function shown(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "number") return String(v);
  return v === null ? "null" : typeof v;
}
