/**
 * Complete, JSON-safe renderings of the SDK's messages. protobuf's canonical
 * JSON leaves out zero values (an exit on CPU 0 has no `cpu`) and fields a
 * message does not have, which makes every consumer special-case absence.
 * These functions emit every field of the schema, always, under the proto
 * (kernel) field names:
 *
 * - zero, false and empty values are present (`"cpu": 0`);
 * - a field the message does not carry is `null`: a TaskStats field the
 *   server's kernel struct lacks, `tgid_stats` on an exit that has no group
 *   record; the one exception is a oneof, of which exactly one member is
 *   present (an event has `exit` or `lost`), as protobuf JSON requires;
 * - 64-bit integers are decimal strings by default (protobuf's JSON mapping:
 *   lossless), or numbers with `{ int64: "number" }` (exact up to 2^53 - 1,
 *   which nanosecond totals pass after 104 days);
 * - enums are their names (`"LOSS_REASON_SUBSCRIBER_OVERFLOW"`), timestamps
 *   RFC 3339 strings.
 *
 * The output parses back with protobuf-es `fromJson` (it ignores the nulls).
 */
import {
  type DescField,
  type DescMessage,
  type JsonObject,
  type JsonValue,
  type MessageShape,
  ScalarType,
  toJson,
} from "@bufbuild/protobuf";
import { type ExitEvent, ExitEventSchema } from "./gen/taskwire/v1/taskstats_pb.ts";

/** How messageToJson renders values. */
export interface JsonOptions {
  /** 64-bit integers as decimal strings ("string", the default: lossless) or JSON numbers ("number"). */
  readonly int64?: "string" | "number";
}

/** An exit event as a fleet yields it: the event and the host it came from. */
export type HostedExitEvent = ExitEvent & { readonly host?: string | undefined };

const INT64 = new Set([
  ScalarType.INT64,
  ScalarType.UINT64,
  ScalarType.SINT64,
  ScalarType.FIXED64,
  ScalarType.SFIXED64,
]);

/**
 * `message` as a JSON object with every field of `schema` present (see the
 * module comment for the rules).
 *
 * @throws RangeError when `options.int64` is neither "string" nor "number".
 */
export function messageToJson<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
  options: JsonOptions = {},
): JsonObject {
  const int64 = options.int64 ?? "string";
  if (int64 !== "string" && int64 !== "number") {
    throw new RangeError(`messageToJson: int64 must be "string" or "number", got ${String(int64)}`);
  }
  const json = toJson(schema, message, { useProtoFieldName: true, alwaysEmitImplicit: true }) as JsonObject;
  return _complete(schema, json, int64 === "number");
}

/**
 * An exit event (an exit or a loss marker, from watchExits or a fleet) as a
 * complete JSON object: `seq`, `cpu`, and `exit` or `lost`,
 * and `host` when the event carries one (a fleet's events do).
 */
export function exitEventToJson(event: HostedExitEvent, options: JsonOptions = {}): JsonObject {
  const json = messageToJson(ExitEventSchema, event, options);
  return event.host === undefined ? json : { host: event.host, ...json };
}

function _complete(schema: DescMessage, json: JsonObject, numbers: boolean): JsonObject {
  const out: JsonObject = {};
  for (const field of schema.fields) {
    // protobuf JSON allows one member of a oneof: the others stay absent so fromJson still reads the output.
    if (field.oneof !== undefined && json[field.name] === undefined) continue;
    out[field.name] = _value(field, json[field.name], numbers);
  }
  return out;
}

function _value(field: DescField, value: JsonValue | undefined, numbers: boolean): JsonValue {
  if (value === undefined || value === null) return null;
  if (field.fieldKind === "message" && _isObject(value)) return _complete(field.message, value, numbers);
  if (field.fieldKind === "list" && Array.isArray(value)) {
    if (field.listKind === "message") {
      return value.map((v) => (_isObject(v) ? _complete(field.message, v, numbers) : v));
    }
    return field.listKind === "scalar" ? value.map((v) => _number(field.scalar, v, numbers)) : value;
  }
  return field.fieldKind === "scalar" ? _number(field.scalar, value, numbers) : value;
}

function _number(scalar: ScalarType, value: JsonValue, numbers: boolean): JsonValue {
  return numbers && INT64.has(scalar) && typeof value === "string" ? Number(value) : value;
}

function _isObject(v: JsonValue): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
