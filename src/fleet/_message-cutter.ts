/**
 * How the pump cuts a CPU's events of a batch into messages NATS takes: one,
 * or halves of it (again) while one is over the limit (_message-limits.ts).
 * A message over the server's max_payload or the stream's max_msg_size is
 * refused however often it is sent, and the pump retries it before anything
 * newer: one would stop publishing for good (with NATS at max_payload 64
 * KiB, every take of ~600 exits did). So a message refused for its size is
 * cut again to the limits as read again (refit), and an exit that fits in no
 * message (the limit was lowered below MIN_MESSAGE_BYTES, _stream-config.ts,
 * while taskwire runs) goes as a loss marker of its seq, counted dropped,
 * instead of blocking every exit after it. A message refused for its size is
 * never sent again as it was (smaller): the limits as known may be stale (read
 * at most once a second, or not at all when JetStream does not answer), and
 * NATS's refusal alone says it is too large. One loss marker refused for its
 * size (a limit lowered below its headers, about 100 bytes) is not sent again
 * at all: no message could hold it, and retrying it before everything newer
 * would block the publisher for good. Its seqs are counted (unsent, and
 * dropped as the exits they stand for were); consumers find them as a gap
 * and report them lost. Messages are cut between the
 * events of their payload (rpc/fast-binary/event-spans.ts), so one awaiting
 * its ack holds its bytes only, not the records it was encoded from.
 */
import { headers, type MsgHdrs } from "@nats-io/nats-core";
import { firstSeqOf } from "../core/retention.ts";
import type { QueuedLoss, QueueItem } from "../core/event-queue.ts";
import type { ExitRecord } from "../kernel/exit-record.ts";
import { encodeEvents } from "../rpc/fast-binary/batch.ts";
import { type EventSpan, eventSpans, joined } from "../rpc/fast-binary/event-spans.ts";
import type { PumpLimits } from "./_message-limits.ts";
import { eventSubject } from "./subjects.ts";

/** The header every message carries: its batch's seq range, "<first>-<last>". */
export const BATCH_HEADER = "Taskwire-Batch";

/**
 * The header of a message sent again: the last seq handed out by then. Any seq after the message's own up to there
 * may be in the stream before it, so a consumer that sees it first does not wait on those as a gap, nor report them
 * lost; and one that has the run from its start still gets it in seq order (the SDK's _fleet-order.ts).
 */
export const RESENT_HEADER = "Taskwire-Resent";

/**
 * Room kept in a message for its headers (Nats-Msg-Id: a host token of at
 * most 128 characters, a run and a seq; BATCH_HEADER: two seqs; RESENT_HEADER:
 * one), well over what they take.
 */
export const HEADER_ROOM = 512;

/**
 * One message: its subject, payload and id, kept until JetStream acks it. It keeps no records: should NATS refuse it
 * for its size, it is cut again from its payload (eventSpans), since records kept until the ack kept their slabs alive
 * outside the memory budget (with 2 CPUs, a window stuck on a stopped NATS held about 40 MB more than its payloads).
 */
export interface Outgoing {
  readonly seq: number;
  readonly cpu: number;
  readonly subject: string;
  readonly payload: Uint8Array;
  readonly msgID: string;
  /** Its headers: BATCH_HEADER (the pump replaces them when it sends the message again, adding RESENT_HEADER). */
  readonly headers: MsgHdrs;
  /** Events in it (exits and loss markers). */
  readonly events: number;
}

/** Where messages go and what they may be. */
export interface CutterOptions {
  readonly prefix: string;
  readonly host: string;
  /** The publisher run, in every message id. */
  readonly run: string;
  readonly limits: PumpLimits;
  readonly log: (level: "info" | "warning", text: string) => void;
}

/** Cuts events into messages; counts the exits it had to drop. */
export class MessageCutter {
  readonly #o: CutterOptions;
  /** Exits that fit in no message, published as loss markers. */
  #oversize = 0;
  /** The limit an oversize exit was last logged at: said once per limit, not once per exit. */
  #loggedAt = -1;
  /** Seqs whose loss marker NATS refused for its size, not published. */
  #unsent = 0;
  /** The limit an unsent loss marker was last logged at. */
  #unsentLoggedAt = -1;

  constructor(o: CutterOptions) {
    this.#o = o;
  }

  /** Exits dropped so far because no message NATS takes could hold one. */
  get oversize(): number {
    return this.#oversize;
  }

  /** Seqs whose loss marker fit in no message NATS takes (refused for its size): not published. */
  get unsent(): number {
    return this.#unsent;
  }

  /** A CPU's events of a batch (`batch`: its seq range) as messages that fit the limits known now. */
  fitted(cpu: number, items: readonly QueueItem<ExitRecord>[], batch: string): Outgoing[] {
    const payload = encodeEvents(items);
    if (this.#fits(payload.length)) return [this.#outgoing(cpu, payload, firstSeqOf(items[0]!), items.length, batch)];
    return this.#cut(cpu, payload, batch);
  }

  /** `m` as it is when it fits the limits known now, else cut again (its headers are the caller's to set). */
  refit(m: Outgoing): Outgoing[] {
    return this.#fits(m.payload.length) ? [m] : this.#cut(m.cpu, m.payload, "");
  }

  /**
   * `m`, which NATS refused for its size, as smaller messages: cut to the limits known now, or halved when it fits
   * them (they are stale); one exit as its loss marker; one loss marker as nothing (counted unsent).
   */
  smaller(m: Outgoing): Outgoing[] {
    const spans = eventSpans(m.payload);
    const one = spans[0]!;
    if (spans.length > 1) return this.#cut(m.cpu, m.payload, "", true);
    if (one.exit) return this.#halved(m.cpu, [this.#drop(one, m.cpu)], "");
    this.#unsend(one);
    return [];
  }

  /**
   * Whether `m` is one loss marker larger, with its headers, than NATS takes now: counted unsent, not to be published
   * (it would only be refused). The limits' HEADER_ROOM is not used here: a marker's message is far smaller.
   */
  unsendable(m: Outgoing): boolean {
    if (m.events !== 1 || wireBytes(m) <= this.#o.limits.bytes()) return false;
    const e = eventSpans(m.payload)[0]!;
    if (e.exit) return false;
    this.#unsend(e);
    return true;
  }

  #fits(payloadBytes: number): boolean {
    return payloadBytes + HEADER_ROOM <= this.#o.limits.bytes();
  }

  // A payload over the limits, cut between its events; an exit no message holds goes as a loss marker. `split`: in two
  // at least, even if it fits.
  #cut(cpu: number, payload: Uint8Array, batch: string, split = false): Outgoing[] {
    this.#o.limits.refresh(); // a limit raised since: messages grow again within REFRESH_MS
    const room = this.#o.limits.bytes() - HEADER_ROOM;
    const spans = eventSpans(payload).map((e) => e.exit && e.bytes.length > room ? this.#drop(e, cpu) : e);
    return this.#halved(cpu, spans, batch, split);
  }

  // One message, or halves of it (again) while one is over the limits: halved by events, as ever.
  #halved(cpu: number, spans: readonly EventSpan[], batch: string, split = false): Outgoing[] {
    const bytes = spans.reduce((n, e) => n + e.bytes.length, 0);
    if (spans.length === 1 || (!split && this.#fits(bytes))) {
      return [this.#outgoing(cpu, joined(spans.map((e) => e.bytes)), spans[0]!.first, spans.length, batch)];
    }
    const half = spans.length >> 1;
    return [...this.#halved(cpu, spans.slice(0, half), batch), ...this.#halved(cpu, spans.slice(half), batch)];
  }

  // Its id is host, run and its first seq: every seq is in exactly one message, so no two messages share one.
  #outgoing(cpu: number, payload: Uint8Array, first: number, events: number, batch: string): Outgoing {
    const { prefix, host, run } = this.#o;
    const subject = eventSubject(prefix, host, cpu);
    return { seq: first, cpu, subject, payload, msgID: `${host}:${run}:${first}`, headers: batchHeader(batch), events };
  }

  // The exit as a loss marker of its seq on its CPU, so a consumer counts it lost (received + lost = produced).
  // SOURCE_ERROR: the server could not pass it on, and no consumer or buffer setting would help.
  #drop(e: EventSpan, cpu: number): EventSpan {
    this.#oversize++;
    this.#warn(e);
    // Nothing else would tell the pump the limit was raised again: no message is refused while exits are dropped.
    void this.#o.limits.reread();
    const lost: QueuedLoss = { kind: "lost", first: e.first, last: e.first, reason: "source-error", cpu };
    return { bytes: encodeEvents([lost]), first: e.first, last: e.first, exit: false };
  }

  // A loss marker no message NATS takes can hold: counted, said once per limit, and the limits read again, since only
  // a read tells the pump the limit was raised (while every message is refused, none is acked).
  #unsend(e: EventSpan): void {
    this.#unsent += e.last - e.first + 1;
    void this.#o.limits.reread().then(() => {
      const limit = this.#o.limits.bytes();
      if (limit === this.#unsentLoggedAt) return;
      this.#unsentLoggedAt = limit;
      this.#o.log(
        "warning",
        `fleet: NATS refused the loss marker of exits ${e.first}-${e.last} (${e.bytes.length} bytes and its headers) ` +
          `for its size: it is not published, nor is any loss marker NATS refuses so until the limit is raised ` +
          `(consumers report those seqs lost once newer ones arrive); the limit is ${this.#o.limits.raise()}`,
      );
    });
  }

  #warn(e: EventSpan): void {
    const limit = this.#o.limits.bytes();
    if (limit === this.#loggedAt) return;
    this.#loggedAt = limit;
    this.#o.log(
      "warning",
      `fleet: exit ${e.first} (${e.bytes.length} bytes) fits in no message NATS takes now, ` +
        `${limit} bytes with headers: it is dropped and published as a loss marker, as is every exit too large ` +
        `until the limit is raised; the limit is ${this.#o.limits.raise()}`,
    );
  }
}

/**
 * The bytes NATS counts of `m` against its limits: its payload and its headers as nats.js writes them
 * ("NATS/1.0", then "\r\nKey: value" each, then "\r\n\r\n"), Nats-Msg-Id included.
 */
export function wireBytes(m: Outgoing): number {
  let bytes = "NATS/1.0".length + "\r\n\r\n".length + "\r\nNats-Msg-Id: ".length + m.msgID.length;
  for (const [k, vs] of m.headers) {
    if (k.toLowerCase() === "nats-msg-id") continue;
    for (const v of vs) bytes += 4 + k.length + v.length;
  }
  return m.payload.length + bytes;
}

/**
 * A fresh BATCH_HEADER of `range`, and RESENT_HEADER of `resent` when the message is sent again: one per message,
 * never shared (publish() sets the message's Nats-Msg-Id on it).
 */
export function batchHeader(range: string, resent?: number): MsgHdrs {
  const h = headers();
  h.set(BATCH_HEADER, range);
  if (resent !== undefined) h.set(RESENT_HEADER, String(resent));
  return h;
}
