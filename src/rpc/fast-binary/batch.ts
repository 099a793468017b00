/**
 * A whole batch of stream events in protobuf binary, for binary streams
 * without a field mask (the hot path). Each record's Exit message (pid, tgid
 * and both TaskStats) is encoded once, kept on the record and shared by
 * every listener it goes to (and by their retention), and each listener's
 * event only wraps it with its own seq and CPU. Loss markers are rare and go
 * through toBinary().
 *
 * connect-es serializes every response message itself and has no hook for a
 * method's serializer, so the batch travels as the response's one unknown
 * field: protobuf-es writes an unknown field as its tag followed by its bytes
 * verbatim, so the batch is the `events` tag's first occurrence plus
 * everything after it. test/fast-encode.test.ts decodes such responses and
 * compares them with the ordinary ones.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import {
  ExitEventSchema,
  ExitSchema,
  type SubscribeExitsResponse,
  SubscribeExitsResponseSchema,
} from "../../gen/taskwire/v1/taskstats_pb.ts";
import {
  ENCODED_BODY,
  ENCODED_BODY_BUFFER,
  type ExitRecord,
  nanosOfMicros,
  secondsOfMicros,
  timestampMicros,
} from "../../kernel/exit-record.ts";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import type { StreamItem } from "../../core/retention.ts";
import { toExitEvent } from "../convert.ts";
import { type AnyStats, maxStatsSize, writeStats, writeVarint } from "./task-stats.ts";
import { type MaybePreEncoded, PRE_ENCODED } from "./pre-encoded.ts";
import { Buffer } from "node:buffer";

/** A protobuf field's tag: its number and wire type, as written before its value. */
export const tag = (no: number, wireType: WireType): number => (no << 3) | wireType;
/** A SubscribeExitsResponse's `events` entry's tag (event-spans.ts reads the entries back, as SEQ and EXIT). */
export const EVENTS = tag(SubscribeExitsResponseSchema.field.events.number, WireType.LengthDelimited);
const QUEUED = tag(SubscribeExitsResponseSchema.field.queued.number, WireType.Varint);
/** An ExitEvent's seq's tag. */
export const SEQ = tag(ExitEventSchema.field.seq.number, WireType.Varint);
const CPU = tag(ExitEventSchema.field.cpu.number, WireType.Varint);
/** An ExitEvent's exit's tag. */
export const EXIT = tag(ExitEventSchema.field.exit.number, WireType.LengthDelimited);
const PID = tag(ExitSchema.field.pid.number, WireType.Varint);
const TGID = tag(ExitSchema.field.tgid.number, WireType.Varint);
const PID_STATS = tag(ExitSchema.field.pidStats.number, WireType.LengthDelimited);
const TGID_STATS = tag(ExitSchema.field.tgidStats.number, WireType.LengthDelimited);
const RECEIVED_AT = tag(ExitSchema.field.receivedAt.number, WireType.LengthDelimited);
const SECONDS = tag(TimestampSchema.field.seconds.number, WireType.Varint);
const NANOS = tag(TimestampSchema.field.nanos.number, WireType.Varint);
// Every tag above is below 128: one byte each.
for (const t of [EVENTS, QUEUED, SEQ, CPU, EXIT, PID, TGID, PID_STATS, TGID_STATS, RECEIVED_AT, SECONDS, NANOS]) {
  if (t > 0x7f) throw new Error("batch encoding assumes one-byte tags");
}

/** A growable byte buffer with a write position. */
class Scratch {
  buf: Uint8Array;
  pos = 0;

  constructor(size: number) {
    this.buf = new Uint8Array(size);
  }

  /** Makes room for `n` more bytes. */
  reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  /** A copy of what was written. */
  copy(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }
}

const shared = new Scratch(1 << 16);
// Where the encoders below write: the shared scratch, or a stream's own buffer while one of its batches is encoded.
let out = shared;

/** Writes `body` as a length-delimited field with tag `t`. */
function field(t: number, body: Uint8Array): void {
  out.reserve(6 + body.length);
  const b = out.buf;
  b[out.pos] = t;
  out.pos = writeVarint(b, out.pos + 1, body.length);
  b.set(body, out.pos);
  out.pos += body.length;
}

// Exit bodies are written straight into shared 64 KiB slabs and handed out
// as views: a Uint8Array with an ArrayBuffer of its own costs more to create
// and collect than the encoding itself. A slab lives while any record encoded
// in it is still queued or retained somewhere (~200 records' worth). Made
// inline: 7 us at p50, 35-58 us at the 99th percentile. Made ahead, as the
// stats vectors' slabs are (kernel/made-ahead.ts), its timers cost more CPU
// in all than that wait (~900 per 200,000 records in the netlink bench).
const SLAB = 64 * 1024;
let slab = new Uint8Array(SLAB);
let slabBuffer: ArrayBufferLike = slab.buffer;
let slabPos = 0;

// The memo lives on the record under a symbol, not in a WeakMap keyed by
// record: ephemeron tables are costly to grow and collect. Vector records
// declare the slot (no shape change per record).
const EXIT_BODY = ENCODED_BODY;
type Memo = ExitRecord & { [EXIT_BODY]?: Uint8Array };

/** A field (one-byte tag `t`) holding stats `s`, written at `p`. */
function statsField(b: Uint8Array, p: number, t: number, s: AnyStats): number {
  // The body goes 5 bytes in (room for any length varint), then moves back behind its real prefix.
  const start = p + 6;
  const end = writeStats(b, start, s);
  b[p++] = t;
  p = writeVarint(b, p, end - start);
  b.copyWithin(p, start, end);
  return p + (end - start);
}

// A record's stats as its source gave them: reading pidStats/tgidStats of a
// vector record would build the messages.
function statsOf(r: ExitRecord): [pid: AnyStats, tgid: AnyStats | undefined] {
  return r.pidVector !== undefined ? [r.pidVector, r.tgidVector] : [r.pidStats, r.tgidStats];
}

// received_at: a Timestamp{seconds, nanos}, zero parts left out as toBinary() does (the field itself is always set).
function timestampField(b: Uint8Array, p: number, ms: number): number {
  // Numbers, not timestampParts' object: that object was 5% of a stream's allocation per record (it was not
  // optimized away).
  const us = timestampMicros(ms), seconds = secondsOfMicros(us), nanos = nanosOfMicros(us);
  const len = (seconds === 0 ? 0 : 1 + varintSize(seconds)) + (nanos === 0 ? 0 : 1 + varintSize(nanos));
  b[p++] = RECEIVED_AT;
  b[p++] = len; // at most 1 + 8 + 1 + 5 bytes: one length byte
  if (seconds !== 0) (b[p++] = SECONDS), (p = writeVarint(b, p, seconds));
  if (nanos !== 0) (b[p++] = NANOS), (p = writeVarint(b, p, nanos));
  return p;
}

/** Whether Exit bodies are still encoded into `buffer` (a body's `buffer`): its slab is not yet full. */
export function isOpenBodySlab(buffer: object): boolean {
  return buffer === slabBuffer;
}

/** Exit{pid, tgid, pid_stats, tgid_stats, received_at}'s bytes for this record, encoded once (a view into a shared slab). */
export function exitBody(r: ExitRecord): Uint8Array {
  const memo = (r as Memo)[EXIT_BODY];
  if (memo !== undefined) return memo;
  const [pid, tgid] = statsOf(r);
  const room = 12 + 6 + 17 + maxStatsSize(pid) + (tgid === undefined ? 0 : 6 + maxStatsSize(tgid));
  if (slabPos + room > slab.length) {
    slab = new Uint8Array(Math.max(SLAB, room));
    slabBuffer = slab.buffer;
    slabPos = 0;
  }
  const b = slab, start = slabPos;
  let p = start;
  if (r.pid !== 0) (b[p++] = PID), (p = writeVarint(b, p, r.pid));
  if (r.tgid !== 0) (b[p++] = TGID), (p = writeVarint(b, p, r.tgid));
  p = statsField(b, p, PID_STATS, pid);
  if (tgid !== undefined) p = statsField(b, p, TGID_STATS, tgid);
  p = timestampField(b, p, r.receivedAtMs);
  slabPos = p;
  const body = b.subarray(start, p);
  (r as Memo)[EXIT_BODY] = body;
  (r as Memo & { [ENCODED_BODY_BUFFER]?: ArrayBufferLike })[ENCODED_BODY_BUFFER] = slabBuffer;
  return body;
}

// ExitEvent{seq, cpu, exit} inside the events field. Zero implicit fields are
// left out, as toBinary() does.
function exitEvent(seq: number, cpu: number, exit: Uint8Array): void {
  out.reserve(1 + 5 + eventLength(seq, cpu, exit));
  out.pos = writeExitEvent(out.buf, out.pos, seq, cpu, exit);
}

// ExitEvent's own length (inside its events field).
function eventLength(seq: number, cpu: number, exit: Uint8Array): number {
  return (seq === 0 ? 0 : 1 + varintSize(seq)) + (cpu === 0 ? 0 : 1 + varintSize(cpu)) + 1 +
    varintSize(exit.length) + exit.length;
}

// The events field holding ExitEvent{seq, cpu, exit}: its tag, length and the event.
function eventFieldSize(seq: number, cpu: number, exit: Uint8Array): number {
  const len = eventLength(seq, cpu, exit);
  return 1 + varintSize(len) + len;
}

// Writes the events field holding ExitEvent{seq, cpu, exit} at `p` in `b`; returns the end.
function writeExitEvent(b: Uint8Array, p: number, seq: number, cpu: number, exit: Uint8Array): number {
  const eventLen = eventLength(seq, cpu, exit);
  b[p++] = EVENTS;
  p = writeVarint(b, p, eventLen);
  if (seq !== 0) (b[p++] = SEQ), (p = writeVarint(b, p, seq));
  if (cpu !== 0) (b[p++] = CPU), (p = writeVarint(b, p, cpu));
  b[p++] = EXIT;
  p = writeVarint(b, p, exit.length);
  b.set(exit, p);
  return p + exit.length;
}

// A varint's length in bytes. Seqs, CPUs and body lengths are under 2^21:
// compared, not divided (it runs three times per exit per subscriber).
function varintSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  let size = 3;
  n = Math.floor(n / 0x200000);
  while (n >= 1) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** An exit, queued or retained: an item that is not a loss marker. */
type ExitItem = Exclude<StreamItem<ExitRecord, Uint8Array>, { kind: "lost" }>;
const isExit = (item: StreamItem<ExitRecord, Uint8Array>): item is ExitItem => item.kind !== "lost";
// Its Exit body, and its CPU.
const exitPayload = (item: ExitItem): Uint8Array => item.kind === "exit" ? exitBody(item.record) : item.payload;
const cpuOf = (item: ExitItem): number => item.kind === "exit" ? item.record.cpu : item.cpu;

// Writes the `events` field entries for `items` into `into`, from position 0.
function writeEvents(items: readonly StreamItem<ExitRecord, Uint8Array>[], into: Scratch): void {
  out = into;
  out.pos = 0;
  try {
    for (const item of items) {
      if (isExit(item)) exitEvent(item.seq, cpuOf(item), exitPayload(item));
      else field(EVENTS, toBinary(ExitEventSchema, toExitEvent(item)));
    }
  } finally {
    out = shared;
  }
}

/** The `events` field entries for `items`, as toBinary() would write them (a buffer of their own). */
export function encodeEvents(items: readonly StreamItem<ExitRecord, Uint8Array>[]): Uint8Array {
  writeEvents(items, shared);
  return shared.copy();
}

/**
 * One stream's buffer for its batches, reused from batch to batch: a fresh
 * buffer per response message (~100 KB under load, per stream) cost an
 * allocation, its zeroing and a copy, and its external memory drove
 * collections, for every subscriber. Reuse is safe because connect-es
 * serializes a response message (copying what it carries) before it asks the
 * handler's generator for the next one (transformSerializeEnvelope; the
 * router's interceptors only pass messages through), and a stream encodes a
 * batch only when its generator is resumed. It holds at most about one
 * message: it shrinks after a much smaller one, and release() lets an idle
 * stream give it up.
 */
export class BatchBuffer {
  #scratch: Scratch | undefined;
  #carrier: (SubscribeExitsResponse & MaybePreEncoded) | undefined;
  /** The most the last few batches used. */
  #peak = 0;
  /** Batches in a row that used under a quarter of the buffer. */
  #small = 0;

  /** `items` encoded into this buffer, valid until the next call. */
  encode(items: readonly StreamItem<ExitRecord, Uint8Array>[]): Uint8Array {
    let s = this.#scratch;
    // Shrunk only after a run of small batches: sizes swing between one event and a full batch under load.
    if (s === undefined || this.#small >= SHRINK_AFTER) {
      s = this.#scratch = new Scratch(Math.max(BATCH_BUFFER_MIN, 2 * this.#peak));
      this.#small = this.#peak = 0;
    }
    writeEvents(items, s);
    const small = s.buf.length > BATCH_BUFFER_MIN && 4 * s.pos < s.buf.length;
    this.#small = small ? this.#small + 1 : 0;
    this.#peak = Math.max(small ? this.#peak : 0, s.pos);
    return s.buf.subarray(0, s.pos);
  }

  /**
   * The message that carries this stream's envelopes (envelopedBatch): one
   * object, its `queued` and envelope replaced per batch, for the same reason
   * the buffer can be reused. A message made per batch cost protobuf-es's
   * create() and a symbol-keyed property added to a fresh object, a thousand
   * times a second per busy stream.
   */
  carry(queued: number, envelope: Uint8Array): SubscribeExitsResponse {
    const m = this.#carrier ??= create(SubscribeExitsResponseSchema) as SubscribeExitsResponse & MaybePreEncoded;
    m.queued = queued;
    m[PRE_ENCODED] = envelope;
    return m;
  }

  /** Gives up the buffer and the last envelope (the stream is idle); the next batch makes a new one. */
  release(): void {
    this.#carrier = undefined;
    this.#scratch = undefined;
    this.#small = this.#peak = 0;
  }
}

const BATCH_BUFFER_MIN = 16 * 1024;
const SHRINK_AFTER = 64;

/**
 * A SubscribeExitsResponse carrying `items` pre-encoded (see the module
 * comment), plus `queued`; with `into`, the bytes are in that stream's
 * buffer (valid until its next batch), else in a buffer of their own.
 */
export function preEncodedBatch(
  items: readonly StreamItem<ExitRecord, Uint8Array>[],
  queued: number,
  into?: BatchBuffer,
): SubscribeExitsResponse {
  const msg = create(SubscribeExitsResponseSchema, { queued });
  if (items.length > 0) {
    const events = into === undefined ? encodeEvents(items) : into.encode(items);
    msg.$unknown = [{ no: EVENTS >>> 3, wireType: WireType.LengthDelimited, data: events.subarray(1) }];
  }
  return msg;
}

/** An envelope's header: a flags byte and the message's length (big-endian uint32). */
const ENVELOPE_HEADER = 5;

/**
 * preEncodedBatch's message, finished as a Connect/gRPC envelope (flags 0)
 * under PRE_ENCODED (pre-encoded.ts), for a transport that sends it as it
 * is. Its bytes are written once into a buffer of its own, not zeroed first:
 * the transport holds it until the socket has taken it, so it cannot be
 * reused. A batch of exits is sized first and written straight into it (at
 * 100 subscribers, encoding into the stream's buffer and copying that into
 * the envelope was a tenth of the main thread). The message's fields say
 * only `queued`; the events are in the envelope alone. The message itself is
 * the stream's one carrier (BatchBuffer.carry), changed by its next batch:
 * read it before then.
 */
export function envelopedBatch(
  items: readonly StreamItem<ExitRecord, Uint8Array>[],
  queued: number,
  scratch: BatchBuffer,
): SubscribeExitsResponse {
  // Exits (the usual batch) are written straight into the envelope, sized first; a batch with a loss marker
  // (rare) is encoded into the stream's buffer and copied.
  const exits = items.every(isExit) ? items : undefined;
  const events = exits === undefined ? scratch.encode(items) : undefined;
  let length = (queued === 0 ? 0 : 1 + varintSize(queued)) + (events?.length ?? 0);
  for (const item of exits ?? []) length += eventFieldSize(item.seq, cpuOf(item), exitPayload(item));
  const envelope = Buffer.allocUnsafe(ENVELOPE_HEADER + length);
  envelope[0] = 0;
  envelope.writeUInt32BE(length, 1);
  let p = ENVELOPE_HEADER;
  if (queued !== 0) (envelope[p++] = QUEUED), (p = writeVarint(envelope, p, queued));
  if (events !== undefined) envelope.set(events, p);
  for (const item of exits ?? []) p = writeExitEvent(envelope, p, item.seq, cpuOf(item), exitPayload(item));
  return scratch.carry(queued, envelope);
}
