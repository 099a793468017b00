/**
 * How the pump cuts a CPU's events of a batch into messages NATS takes: one,
 * or halves of it (again) while one is over the limit (_message-limits.ts).
 * A message over the server's max_payload or the stream's max_msg_size is
 * refused however often it is sent, and the pump retries it before anything
 * newer: one would stop publishing for good (with NATS at max_payload 64
 * KiB, every take of ~600 exits did). So a message refused for its size is
 * cut again to the limits as read again (refit), and an exit that fits in no
 * message (the limit was lowered below MIN_MESSAGE_BYTES while taskwire
 * runs) goes as a loss marker of its seq, counted dropped, instead of
 * blocking every exit after it.
 */
import { headers, type MsgHdrs } from "@nats-io/nats-core";
import { firstSeqOf } from "../core/retention.ts";
import type { QueuedExit, QueuedLoss, QueueItem } from "../core/event-queue.ts";
import type { ExitRecord } from "../kernel/exit-record.ts";
import { encodeEvents } from "../rpc/fast-binary/batch.ts";
import type { PumpLimits } from "./_message-limits.ts";
import { MIN_MESSAGE_BYTES } from "./_stream-config.ts";
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

/** One message: its subject, payload and id, kept until JetStream acks it. */
export interface Outgoing {
  readonly seq: number;
  readonly cpu: number;
  readonly subject: string;
  readonly payload: Uint8Array;
  readonly msgID: string;
  /** Its headers: BATCH_HEADER (the pump replaces them when it sends the message again, adding RESENT_HEADER). */
  readonly headers: MsgHdrs;
  /** Its events, to cut it again should NATS refuse it for its size. */
  readonly items: readonly QueueItem<ExitRecord>[];
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

  constructor(o: CutterOptions) {
    this.#o = o;
  }

  /** Exits dropped so far because no message NATS takes could hold one. */
  get oversize(): number {
    return this.#oversize;
  }

  /** A CPU's events of a batch (`batch`: its seq range) as messages that fit the limits known now. */
  fitted(cpu: number, items: readonly QueueItem<ExitRecord>[], batch: string): Outgoing[] {
    return this.#halved(cpu, this.#withoutOversize(items), batch);
  }

  /** `m` as it is when it fits the limits known now, else cut again (its headers are the caller's to set). */
  refit(m: Outgoing): Outgoing[] {
    if (m.payload.length + HEADER_ROOM <= this.#o.limits.bytes()) return [m];
    return this.fitted(m.cpu, m.items, "");
  }

  #halved(cpu: number, items: readonly QueueItem<ExitRecord>[], batch: string): Outgoing[] {
    const m = this.#outgoing(cpu, items, batch);
    if (items.length === 1 || m.payload.length + HEADER_ROOM <= this.#o.limits.bytes()) return [m];
    const half = items.length >> 1;
    return [...this.#halved(cpu, items.slice(0, half), batch), ...this.#halved(cpu, items.slice(half), batch)];
  }

  // Its id is host, run and its first seq: every seq is in exactly one message, so no two messages share one.
  #outgoing(cpu: number, items: readonly QueueItem<ExitRecord>[], batch: string): Outgoing {
    const { prefix, host, run } = this.#o;
    const first = firstSeqOf(items[0]!);
    const payload = encodeEvents(items);
    const msgID = `${host}:${run}:${first}`;
    return {
      seq: first,
      cpu,
      subject: eventSubject(prefix, host, cpu),
      payload,
      msgID,
      headers: batchHeader(batch),
      items,
    };
  }

  // Every exit fits in a message of MIN_MESSAGE_BYTES (the publisher refuses to start under it): only a limit
  // lowered since needs each exit measured.
  #withoutOversize(items: readonly QueueItem<ExitRecord>[]): readonly QueueItem<ExitRecord>[] {
    const limit = this.#o.limits.bytes();
    if (limit >= MIN_MESSAGE_BYTES) return items;
    const room = limit - HEADER_ROOM;
    return items.map((item) => item.kind === "exit" && encodeEvents([item]).length > room ? this.#drop(item) : item);
  }

  // The exit as a loss marker of its seq on its CPU, so a consumer counts it lost (received + lost = produced).
  // SOURCE_ERROR: the server could not pass it on, and no consumer or buffer setting would help.
  #drop(item: QueuedExit<ExitRecord>): QueuedLoss {
    this.#oversize++;
    this.#warn(item);
    // Nothing else would tell the pump the limit was raised again: no message is refused while exits are dropped.
    void this.#o.limits.reread();
    return { kind: "lost", first: item.seq, last: item.seq, reason: "source-error", cpu: item.record.cpu };
  }

  #warn(item: QueuedExit<ExitRecord>): void {
    const limit = this.#o.limits.bytes();
    if (limit === this.#loggedAt) return;
    this.#loggedAt = limit;
    this.#o.log(
      "warning",
      `fleet: exit ${item.seq} (${encodeEvents([item]).length} bytes) fits in no message NATS takes now, ` +
        `${limit} bytes with headers: it is dropped and published as a loss marker, as is every exit too large ` +
        `until the limit is raised; the limit is ${this.#o.limits.raise()}`,
    );
  }
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
