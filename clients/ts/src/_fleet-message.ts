/**
 * One JetStream message of the fleet stream, checked before anything of it
 * reaches the order keeper: anyone allowed to publish on `<prefix>.*.exits.*`
 * can send anything, and one bad message must cost its sender only itself.
 * A message is taken whole or refused whole (a bad message): it must decode,
 * hold 1..MAX_FLEET_EVENTS events (the publisher never sends more, see
 * src/fleet/_pump.ts), each an exit or a loss marker, with seqs 1..2^53-1
 * strictly increasing, and loss markers consistent (first <= last, count =
 * last - first + 1). Also what its headers say of its place in its
 * publisher's run (fleetHeaders).
 */
import { type ExitEvent, SubscribeExitsResponseSchema } from "./gen/taskwire/v1/taskstats_pb.ts";
import { countLengthDelimited, decodeFast } from "./_fast-decode.ts";

/** Most events one message may carry (the publisher's batch size). */
export const MAX_FLEET_EVENTS = 1024;

/** A checked event: the seqs it covers. */
export interface Checked {
  readonly ev: ExitEvent;
  readonly first: number;
  readonly last: number;
}

/** Why a message was refused. */
export class BadFleetMessage extends Error {
  override readonly name = "BadFleetMessage";
}

const MAX_SEQ = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Most bytes one message may have: 1,024 events of the largest exit (two
 * TaskStats of about 1.1 KB each) take about 2.5 MB.
 */
export const MAX_FLEET_BYTES = 4 * 2 ** 20;

/** The message's events with their seqs; BadFleetMessage saying why when it is not one a publisher sends. */
export function checkFleetMessage(data: Uint8Array): Checked[] {
  // Refused before it is decoded: decoded, a 12 MB message of 3 million 4-byte events made 470 MB of objects in
  // 0.8 s before its count was checked (a server's max_payload may be up to 64 MB).
  if (data.length > MAX_FLEET_BYTES) {
    throw new BadFleetMessage(`${data.length} bytes, more than the ${MAX_FLEET_BYTES} a publisher sends`);
  }
  const counted = countLengthDelimited(data, 1); // SubscribeExitsResponse.events
  if (counted > MAX_FLEET_EVENTS) {
    throw new BadFleetMessage(`${counted} events, more than the ${MAX_FLEET_EVENTS} a publisher sends`);
  }
  let events: ExitEvent[];
  try {
    events = decodeFast(SubscribeExitsResponseSchema, data).events;
  } catch (err) {
    throw new BadFleetMessage(`not a SubscribeExitsResponse (${err instanceof Error ? err.message : String(err)})`);
  }
  if (events.length === 0) throw new BadFleetMessage("no events");
  if (events.length > MAX_FLEET_EVENTS) {
    throw new BadFleetMessage(`${events.length} events, more than the ${MAX_FLEET_EVENTS} a publisher sends`);
  }
  const out: Checked[] = [];
  let prev = 0;
  for (const ev of events) {
    const [first, last] = _seqs(ev);
    if (first <= prev) throw new BadFleetMessage(`seq ${first} after ${prev} in one message`);
    prev = last;
    out.push({ ev: _strip(ev), first, last });
  }
  return out;
}

function _seqs(ev: ExitEvent): [number, number] {
  if (ev.event.case === "exit") return [_seq(ev.seq), _seq(ev.seq)];
  if (ev.event.case !== "lost") throw new BadFleetMessage("an event that is neither an exit nor a loss marker");
  const { firstSeq, lastSeq, count } = ev.event.value;
  const [first, last] = [_seq(firstSeq), _seq(lastSeq)];
  if (first > last || BigInt(count) !== BigInt(lastSeq) - BigInt(firstSeq) + 1n) {
    throw new BadFleetMessage(`loss marker ${first}-${last} of count ${count}`);
  }
  return [first, last];
}

// Seqs are counted from 1; past 2^53 a Number loses them, and no publisher gets there (2^53 exits at 10^6/s is 285 years).
function _seq(v: bigint | number): number {
  const b = BigInt(v);
  if (b < 1n || b > MAX_SEQ) throw new BadFleetMessage(`seq ${b} outside 1..2^53-1`);
  return Number(b);
}

// Unknown fields alias the message's payload (decodeFast keeps them as subarrays): drop them, so that an event held
// waiting for a gap costs its fields, not a whole (up to 1 MB) message.
function _strip(ev: ExitEvent): ExitEvent {
  const visit = (o: unknown, depth: number): void => {
    if (typeof o !== "object" || o === null || depth > 4 || o instanceof Uint8Array) return;
    delete (o as { $unknown?: unknown }).$unknown;
    for (const v of Object.values(o)) visit(v, depth + 1);
  };
  visit(ev, 0);
  return ev;
}

/** The header naming a message's batch, "<first>-<last>" (the publisher's BATCH_HEADER, src/fleet/_message-cutter.ts). */
const BATCH_HEADER = "Taskwire-Batch";

/** The header of a message sent again: the last seq handed out by then (the publisher's RESENT_HEADER). */
const RESENT_HEADER = "Taskwire-Resent";

/**
 * What a message's headers say of its place in its publisher's run: its
 * batch's seq range, and the last seq handed out when it was sent again.
 * Each is undefined when absent (an older publisher) or malformed;
 * FleetOrder checks them against the message's seqs.
 */
export function fleetHeaders(
  h: { get(key: string): string } | undefined,
): { batch: [number, number] | undefined; resent: number | undefined } {
  const b = /^(\d{1,16})-(\d{1,16})$/.exec(h?.get(BATCH_HEADER) ?? "");
  const r = /^\d{1,16}$/.exec(h?.get(RESENT_HEADER) ?? "");
  return {
    batch: b === null ? undefined : [Number(b[1]), Number(b[2])],
    resent: r === null ? undefined : Number(r[0]),
  };
}

/** A subject or token as safe to print on a terminal: control and non-ASCII characters as "?", at most 200 characters. */
export function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, "?").slice(0, 200);
}
