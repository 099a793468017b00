/**
 * The events of an encodeEvents() payload (batch.ts), read back from its
 * bytes. Such a payload is a SubscribeExitsResponse of its `events` field
 * only: each entry a tag, a length and an ExitEvent's bytes, so any run of
 * whole entries copied out is a SubscribeExitsResponse too. The fleet pump
 * cuts a message NATS refused for its size from these (fleet/_message-cutter.ts)
 * instead of keeping, until the ack, the records it was encoded from: a
 * record keeps its stats and body slabs alive (core/_slab-ledger.ts), and a
 * window of such messages held about 40 MB more outside the memory budget
 * (2 CPUs, nats-server stopped; 12 MB with 8 CPUs: smaller messages).
 */
import { WireType } from "@bufbuild/protobuf/wire";
import { ExitEventSchema, LostSchema } from "../../gen/taskwire/v1/taskstats_pb.ts";
import { EVENTS, EXIT, SEQ, tag } from "./batch.ts";

const LOST = tag(ExitEventSchema.field.lost.number, WireType.LengthDelimited);
const FIRST_SEQ = tag(LostSchema.field.firstSeq.number, WireType.Varint);

/** One entry of the `events` field: its bytes (tag and length included), its seqs, and whether it is an exit. */
export interface EventSpan {
  /** A view into the payload read. */
  readonly bytes: Uint8Array;
  /** An exit's seq, a loss marker's first_seq. */
  readonly first: number;
  /** An exit's seq, a loss marker's last (its event's seq). */
  readonly last: number;
  readonly exit: boolean;
}

/** Every entry of `payload`, in order; throws when it is not an encodeEvents() payload. */
export function eventSpans(payload: Uint8Array): EventSpan[] {
  const r = new Reader(payload);
  const out: EventSpan[] = [];
  while (r.pos < payload.length) {
    const start = r.pos;
    if (r.varint() !== EVENTS) throw new Error(`not an events entry at byte ${start}`);
    const end = r.end(r.varint());
    const { first, last, exit } = readEvent(r, end);
    out.push({ bytes: payload.subarray(start, end), first, last, exit });
  }
  return out;
}

/** `parts` copied into one buffer of their own (pieces of a message must not keep the whole alive). */
export function joined(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.length));
  return out;
}

// An ExitEvent up to `end`: its seq field is an exit's seq, but a loss marker's last (convert.ts), so a marker's
// first is its Lost's first_seq. Any field order is read, as a protobuf decoder would.
function readEvent(r: Reader, end: number): { first: number; last: number; exit: boolean } {
  let seq = 0, lostFirst = 0, exit = false;
  while (r.pos < end) {
    const t = r.varint();
    if (t === SEQ) seq = r.varint();
    else if (t === EXIT) (exit = true, r.skip(t));
    else if (t === LOST) lostFirst = readFirstSeq(r, r.end(r.varint()));
    else r.skip(t);
  }
  const first = exit ? seq : lostFirst;
  if (r.pos !== end || first < 1 || seq < first) throw new Error(`not an exit or a loss marker ending at byte ${end}`);
  return { first, last: seq, exit };
}

// A Lost's first_seq, up to `end`.
function readFirstSeq(r: Reader, end: number): number {
  let first = 0;
  while (r.pos < end) {
    const t = r.varint();
    if (t === FIRST_SEQ) first = r.varint();
    else r.skip(t);
  }
  return first;
}

// A cursor over protobuf wire bytes. Varints are read as Numbers (seqs stay under 2^53).
class Reader {
  pos = 0;
  readonly #buf: Uint8Array;

  constructor(buf: Uint8Array) {
    this.#buf = buf;
  }

  varint(): number {
    let n = 0, scale = 1;
    for (;;) {
      if (this.pos >= this.#buf.length || scale > 2 ** 63) throw new Error(`bad varint at byte ${this.pos}`);
      const b = this.#buf[this.pos++]!;
      n += (b & 0x7f) * scale;
      if (b < 0x80) return n;
      scale *= 128;
    }
  }

  // Where a length-delimited field of `len` bytes from here ends.
  end(len: number): number {
    const end = this.pos + len;
    if (end > this.#buf.length) throw new Error(`a field of ${len} bytes past the end at byte ${this.pos}`);
    return end;
  }

  skip(t: number): void {
    const wireType = t & 7;
    if (wireType === WireType.Varint) this.varint();
    else if (wireType === WireType.LengthDelimited) this.pos = this.end(this.varint());
    else if (wireType === WireType.Bit64) this.pos = this.end(8);
    else if (wireType === WireType.Bit32) this.pos = this.end(4);
    else throw new Error(`wire type ${wireType} at byte ${this.pos}`);
  }
}
