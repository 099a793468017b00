/**
 * A whole batch of stream events in protobuf binary, for binary streams
 * without a field mask (the hot path). Encoding each ExitEvent wrapper by
 * reflection cost ~6 µs per event, more than the record itself; here every
 * exit is written directly around its TaskStats bytes (lengthDelimited(),
 * encoded once per record and shared by all listeners). Loss markers are rare
 * and go through toBinary().
 *
 * The result travels as the response's one unknown field: protobuf-es writes
 * an unknown field as its tag followed by its bytes verbatim, so the batch is
 * the `events` tag's first occurrence plus everything after it.
 * test/fast-encode.test.ts decodes such responses and compares them with the
 * ordinary ones.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import {
  ExitEventSchema, ExitSchema, SubscribeExitsResponseSchema, type SubscribeExitsResponse,
} from "../gen/taskwire/v1/taskstats_pb.ts";
import type { ExitRecord } from "../kernel/exit-record.ts";
import { toExitEvent } from "./convert.ts";
import type { QueueItem } from "./event-queue.ts";
import { lengthDelimited, Scratch, writeVarint } from "./_fast-encode.ts";

const tag = (no: number, wireType: WireType): number => (no << 3) | wireType;
const EVENTS = tag(SubscribeExitsResponseSchema.field.events.number, WireType.LengthDelimited);
const SEQ = tag(ExitEventSchema.field.seq.number, WireType.Varint);
const CPU = tag(ExitEventSchema.field.cpu.number, WireType.Varint);
const EXIT = tag(ExitEventSchema.field.exit.number, WireType.LengthDelimited);
const PID = tag(ExitSchema.field.pid.number, WireType.Varint);
const TGID = tag(ExitSchema.field.tgid.number, WireType.Varint);
const PID_STATS = tag(ExitSchema.field.pidStats.number, WireType.LengthDelimited);
const TGID_STATS = tag(ExitSchema.field.tgidStats.number, WireType.LengthDelimited);
// Every tag above is below 128: one byte each.
for (const t of [EVENTS, SEQ, CPU, EXIT, PID, TGID, PID_STATS, TGID_STATS]) if (t > 0x7f) throw new Error("batch encoding assumes one-byte tags");

const out = new Scratch();

/** Writes `body` as a length-delimited field with tag `t`. */
function field(t: number, body: Uint8Array): void {
  out.reserve(6 + body.length);
  const b = out.buf;
  b[out.pos] = t;
  out.pos = writeVarint(b, out.pos + 1, body.length);
  b.set(body, out.pos);
  out.pos += body.length;
}

// Exit{pid, tgid, pid_stats, tgid_stats} inside ExitEvent{seq, cpu, exit}
// inside the events field. Zero implicit fields are left out, as toBinary() does.
function exitEvent(seq: number, r: ExitRecord): void {
  const pid = lengthDelimited(r.pidStats);
  const tgid = r.tgidStats === undefined ? undefined : lengthDelimited(r.tgidStats);
  const exitLen = (r.pid === 0 ? 0 : 1 + varintSize(r.pid)) + (r.tgid === 0 ? 0 : 1 + varintSize(r.tgid)) + 1 + pid.length + (tgid === undefined ? 0 : 1 + tgid.length);
  const eventLen = (seq === 0 ? 0 : 1 + varintSize(seq)) + (r.cpu === 0 ? 0 : 1 + varintSize(r.cpu)) + 1 + varintSize(exitLen) + exitLen;
  out.reserve(1 + 5 + eventLen);
  const b = out.buf;
  let p = out.pos;
  b[p++] = EVENTS;
  p = writeVarint(b, p, eventLen);
  if (seq !== 0) (b[p++] = SEQ), (p = writeVarint(b, p, seq));
  if (r.cpu !== 0) (b[p++] = CPU), (p = writeVarint(b, p, r.cpu));
  b[p++] = EXIT;
  p = writeVarint(b, p, exitLen);
  if (r.pid !== 0) (b[p++] = PID), (p = writeVarint(b, p, r.pid));
  if (r.tgid !== 0) (b[p++] = TGID), (p = writeVarint(b, p, r.tgid));
  b[p++] = PID_STATS;
  b.set(pid, p);
  p += pid.length;
  if (tgid !== undefined) {
    b[p++] = TGID_STATS;
    b.set(tgid, p);
    p += tgid.length;
  }
  out.pos = p;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** The `events` field entries for `items`, as toBinary() would write them. */
export function encodeEvents(items: readonly QueueItem[]): Uint8Array {
  out.pos = 0;
  for (const item of items) {
    if (item.kind === "exit") exitEvent(item.seq, item.record);
    else field(EVENTS, toBinary(ExitEventSchema, toExitEvent(item)));
  }
  return out.copy();
}

/** A SubscribeExitsResponse carrying `items` pre-encoded (see the module comment), plus `queued`. */
export function preEncodedBatch(items: readonly QueueItem[], queued: number): SubscribeExitsResponse {
  const msg = create(SubscribeExitsResponseSchema, { queued });
  if (items.length > 0) msg.$unknown = [{ no: EVENTS >>> 3, wireType: WireType.LengthDelimited, data: encodeEvents(items).subarray(1) }];
  return msg;
}
