/**
 * watchFleet's runtime-neutral part: a JetStream consumer over the stream
 * `taskwire serve --nats` publishes to, yielding each message's events
 * (the same ExitEvent as watchExits) with the host they came from. How to
 * connect is the entry's business (fleet.ts: WebSocket; node.ts: TCP).
 *
 * Subjects are `<prefix>.<host>.exits.<cpu>`, and `<prefix>.<host>.exits.lost`
 * for loss markers of the publisher's own queue (they span every CPU). NATS
 * wildcards match whole tokens only, so the consumer's filter subject names
 * a host only when `hosts` is a plain name; a glob ("web-*") filters
 * `<prefix>.*.exits.*` here, by host token, as do `cpus` (loss markers always
 * pass: which CPUs their seqs were on is not known).
 */
import { create } from "@bufbuild/protobuf";
import { ExitEventSchema, LossReason } from "./gen/taskwire/v1/taskstats_pb.ts";
import { FleetOrder, type Ready } from "./_fleet-order.ts";
import { BadFleetMessage, checkFleetMessage, fleetHeaders, printable } from "./_fleet-message.ts";
import { statuses } from "./_fleet-status.ts";
import { hideUserinfo } from "./_redact.ts";
import { deleteConsumer, fleetConsumer } from "./_fleet-consumer.ts";
import { _plan, type Plan } from "./_fleet-plan.ts";
import type { FleetBadMessage, FleetConnect, FleetExitEvent, WatchFleet, WatchFleetOptions } from "./_fleet-options.ts";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Consumer, ConsumerMessages, JsMsg } from "@nats-io/jetstream";

// The pull is bounded in bytes, not messages: 256 messages of up to 1 MB each is 256 MB in flight, and with large
// messages (measured: 200 KB each) a 256-message pull stalled (219 messages in 15 s against 2000 in 0.6 s by bytes).
const PULL_BYTES = 8 * 2 ** 20;

// A message larger than a pull's bytes is never delivered (the server answers each pull 409 "Message Size Exceeds
// MaxBytes"), and nothing after it either: with max_payload raised to 16 MB, one 9 MB message anyone could publish
// stopped every consumer for good. So a pull takes at least the largest message the server takes, with room for its
// subject, reply subject and the delivery's overhead.
const PULL_SLACK = 64 * 1024;

/** The bytes of one pull: PULL_BYTES, or the server's max_payload and some when that is more. */
export function _pullBytes(maxPayload: number | undefined): number {
  return Math.max(PULL_BYTES, (maxPayload ?? 0) + PULL_SLACK);
}

// A pull lasts 5 s (server heartbeats every 2.5 s) instead of nats.js's 30 s. Where the server ends a pull with a
// status nats.js recovers from only by missing two heartbeats (409 "Message Size Exceeds MaxBytes" with nothing
// buffered, among others), the flow stops for about twice the heartbeat: ~5 s instead of ~30. Suspected, not
// reproduced alone, in a loaded test run where every host's last events had not arrived after 15 s although the
// publishers had them acked.
const PULL_EXPIRES_MS = 5000;

/** watchFleet over `connect`. */
export function createWatchFleet(connect: FleetConnect): WatchFleet {
  return async function* watchFleet(options: WatchFleetOptions): AsyncGenerator<FleetExitEvent, void, undefined> {
    const plan = _plan(options);
    const own = options.connection === undefined;
    const nc = options.connection ?? await _connect(connect, options);
    let messages: ConsumerMessages | undefined;
    let consumer: Consumer | undefined;
    const status = statuses(nc, options.onStatus);
    const open = new _OpenMessages();
    const stop = _stopper(() => void messages?.close(), open, options.durable !== undefined);
    options.signal?.addEventListener("abort", stop.abort, { once: true });
    try {
      if (options.signal?.aborted) return;
      consumer = await fleetConsumer(nc, options, plan.subject);
      const consumed = await consumer.consume({
        max_bytes: _pullBytes(nc.info?.max_payload),
        expires: PULL_EXPIRES_MS,
      });
      // Aborted during the setup: ends with nothing yielded. Its close() is not awaited: it resolves only once the
      // iterator runs (which stops it), and this one never will; the subscription goes at once all the same.
      if (stop.done()) return void consumed.close();
      messages = consumed;
      const ctx = { nc, plan, order: _order(options), bad: _badMessages(options.onBadMessage) };
      const ticks = _ticker(ctx.order.waitMs);
      const it = messages[Symbol.asyncIterator]();
      let next: Promise<IteratorResult<JsMsg>> | undefined;
      try {
        for (;;) {
          next ??= it.next();
          const r = await ticks.race(next);
          // Gaps expire on a timer too: a host that went quiet after a gap is not waited on forever.
          if (ticks.due()) yield* _yield(ctx.order.expire(), open);
          if (r !== TICK) {
            next = undefined;
            if (r.done === true) break;
            yield* _yield(_arrive(r.value, ctx), open);
          }
          if (stop.done()) break;
        }
      } finally {
        ticks.stop();
        stop.clear();
        // Ends the consumer's iterator as for-await's break would (close() alone waits for it to be read to its end).
        void it.return?.();
      }
    } finally {
      status.stop();
      options.signal?.removeEventListener("abort", stop.abort);
      await messages?.close();
      if (options.durable === undefined && consumer !== undefined) await deleteConsumer(consumer);
      if (own) await nc.close();
    }
  };
}

// nats.js's own error names no server ("connection refused"): the error says which servers were tried and what to
// check, and keeps nats.js's as its cause (its code included). A URL's user and password are not shown.
async function _connect(connect: FleetConnect, options: WatchFleetOptions): Promise<NatsConnection> {
  const servers = _servers(options.servers);
  try {
    return await connect({ ...options.connectOptions, servers });
  } catch (err) {
    const shown = servers.map(hideUserinfo).join(", ");
    throw new Error(
      `watchFleet: cannot connect to NATS at ${shown}: ${(err as Error).message}; check the URLs, that the ` +
        "server runs with JetStream (nats-server -js), and the credentials (connectOptions)",
      { cause: err },
    );
  }
}

function _servers(servers: string | readonly string[] | undefined): string[] {
  const list = typeof servers === "string"
    ? servers.split(",").map((s) => s.trim()).filter(Boolean)
    : [...servers ?? []];
  if (list.length === 0) throw new TypeError("watchFleet: pass `connection` (a NatsConnection) or `servers`");
  return list;
}

/** An event waiting its turn: whether it passes the filters, and how to ack its message once it is yielded. */
interface Pending {
  readonly event: FleetExitEvent;
  readonly keep: boolean;
  /** Set on the message's last event taken: ack it after this one (the reply subject only: the payload is not kept). */
  ack: (() => void) | undefined;
  /** The message's mark, shared by its events: whether some of them were yielded before it was acked. */
  readonly mark: _Mark;
}

/** A delivered message: its stream seq, whether its events began to be yielded, and whether it was acked. */
interface _Mark {
  readonly seq: number;
  started: boolean;
  acked: boolean;
}

/**
 * Messages partly yielded and not acked. A durable consumer's messages are
 * acked after their last event; a message the iteration ends in the middle of
 * comes again whole, repeating what was yielded. A publisher's batch is one
 * message per CPU with interleaved seqs, so in seq order a message is often
 * partly yielded while it waits for another CPU's message of its batch.
 */
class _OpenMessages {
  count = 0;
  yielded(m: _Mark): void {
    if (m.started || m.acked) return;
    m.started = true;
    this.count++;
  }
  acked(m: _Mark): void {
    if (m.started && !m.acked) this.count--;
    m.acked = true;
  }
}

/**
 * How long an aborted durable iteration goes on to finish the messages it
 * partly yielded (their other CPU's messages are most often already fetched).
 * Past it, it ends anyway (at the next message or tick, 1 s at most), and
 * those messages come again to the next iteration (at least once).
 */
const DRAIN_MS = 2000;

// What an abort does: closes the consumer at once, or (durable, messages partly yielded) at the drain's deadline.
// The loop ends when done() says so: an ordered consumer at once, a durable one when no message is partly yielded
// or the deadline has passed (an abort during setup, before there is a consumer to close, included).
function _stopper(close: () => void, open: _OpenMessages, durable: boolean) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let deadline = Infinity;
  return {
    abort: () => {
      deadline = Date.now() + (durable ? DRAIN_MS : 0);
      if (!durable || open.count === 0) close();
      else timer = setTimeout(close, DRAIN_MS);
    },
    done: () => deadline !== Infinity && (open.count === 0 || Date.now() >= deadline),
    clear: () => clearTimeout(timer),
  };
}

interface Ctx {
  readonly nc: NatsConnection;
  readonly plan: Plan;
  readonly order: FleetOrder<Pending> & { readonly waitMs: number };
  readonly bad: (m: JsMsg, host: string, reason: string) => void;
}

// The order keeper's outputs as events: gaps as loss markers, events yielded then their message acked.
function* _yield(ready: readonly Ready<Pending>[], open: _OpenMessages): Generator<FleetExitEvent, void, undefined> {
  for (const r of ready) {
    if ("gap" in r) yield _gapLoss(r.gap, r.label);
    else {
      open.yielded(r.item.mark);
      if (r.item.keep) yield r.item.event;
      if (r.item.ack !== undefined) (r.item.ack(), open.acked(r.item.mark));
    }
  }
}

// A message's events through the order keeper: what can be yielded now. A message of a host not asked for, or one
// delivered again, is acked at once; a bad one is terminated and counted.
function _arrive(m: JsMsg, ctx: Ctx): Ready<Pending>[] {
  const host = m.subject.split(".")[ctx.plan.prefixTokens] ?? "";
  if (ctx.plan.host !== undefined && !ctx.plan.host(host)) return (m.ack(), []);
  let events, run, fresh;
  const { batch, resent } = fleetHeaders(m.headers);
  try {
    // Runs are kept (4,096) after their events went: a run named by a 60 KB Nats-Msg-Id (JetStream takes 64 KB of
    // headers) or subject cost its size each, 63 MB per 1,000 such messages. A publisher's are far shorter.
    if (host.length > MAX_HOST_TOKEN) throw new BadFleetMessage(`a host token over ${MAX_HOST_TOKEN} characters`);
    // Nats-Msg-Id is "<host>:<run>:<seq or first-last>" (the publisher's); seqs start again with each run.
    const token = m.headers?.get("Nats-Msg-Id").split(":")[1] ?? "";
    if (token.length > MAX_RUN_TOKEN) throw new BadFleetMessage(`a Nats-Msg-Id run over ${MAX_RUN_TOKEN} characters`);
    run = `${host}:${token}`;
    events = checkFleetMessage(m.data);
    // A redelivery (the consumer delivered this stream message before) may repeat what was yielded; a first one not.
    fresh = m.info.deliveryCount <= 1;
  } catch (err) {
    return (ctx.bad(m, host, err instanceof BadFleetMessage ? err.message : String(err)), []);
  }
  const out: Ready<Pending>[] = [];
  let held = false, last: Pending | undefined;
  const bytes = Math.ceil(m.data.length / events.length) + 256;
  const mark: _Mark = { seq: m.seq, started: false, acked: false };
  for (const { ev, first, last: end } of events) {
    const item: Pending = {
      event: Object.assign(ev, { host }),
      keep: ctx.plan.keep?.(ev) ?? true,
      ack: undefined,
      mark,
    };
    const ready = ctx.order.push(run, { first, last: end, item, bytes }, { fresh, label: host, batch, resent });
    // Held from an earlier delivery of this very message; a publisher gone wrong may repeat another message's seqs.
    if (ready === null) held ||= ctx.order.heldItem(run, first)?.mark.seq === m.seq;
    else (last = item, out.push(...ready));
  }
  _ackPlan(m, ctx, { mark, last, held });
  return out;
}

// Who acks a message: its last event taken, once yielded. A repeat of events held from an earlier delivery (its
// ack wait ran out while they waited on a gap): nobody here, that delivery's events ack it once yielded (an ack now
// would lose them if the iteration ended first). A repeat of what was yielded, all of it: acked now.
function _ackPlan(m: JsMsg, ctx: Ctx, o: { mark: _Mark; last: Pending | undefined; held: boolean }): void {
  if (o.held) o.mark.acked = true;
  else if (o.last !== undefined) o.last.ack = _acker(m, ctx.nc);
  else (m.ack(), o.mark.acked = true);
}

/** The longest host token a publisher sends (src/fleet/subjects.ts's MAX_HOST_TOKEN). */
const MAX_HOST_TOKEN = 128;

/** The longest run in a Nats-Msg-Id taken (a publisher's is 8 hex digits). */
const MAX_RUN_TOKEN = 64;

// An ack by the message's reply subject (what JsMsg.ack() sends), so a held event does not keep the payload alive.
function _acker(m: JsMsg, nc: NatsConnection): () => void {
  const reply = (m as { msg?: { reply?: string } }).msg?.reply;
  return reply ? _ackBy(nc, reply) : () => m.ack();
}

// Its own scope: a closure made beside `() => m.ack()` would share its context, and so keep `m` and its payload.
function _ackBy(nc: NatsConnection, reply: string): () => void {
  return () => nc.publish(reply, "+ACK");
}

function _order(o: WatchFleetOptions): FleetOrder<Pending> & { readonly waitMs: number } {
  const r = o.reorder;
  const waitMs = r?.waitMs ?? (o.ackWaitMs ?? 30_000) + 5000;
  const order = new FleetOrder<Pending>({
    waitMs,
    maxHeld: r?.maxHeld ?? 65_536,
    ...(r?.maxHeldBytes !== undefined && { maxHeldBytes: r.maxHeldBytes }),
    ...(r?.maxRuns !== undefined && { maxRuns: r.maxRuns }),
    ...(r?.maxRunsPerHost !== undefined && { maxRunsPerLabel: r.maxRunsPerHost }),
    ...(r?.maxEarlySeqs !== undefined && { maxEarlyTotal: r.maxEarlySeqs }),
  });
  return Object.assign(order, { waitMs });
}

// Bad messages: terminated (never delivered again), counted per host (at most 4096 hosts apart), reported.
function _badMessages(cb: ((info: FleetBadMessage) => void) | undefined): Ctx["bad"] {
  const counts = new Map<string, number>();
  return (m, host, reason) => {
    m.term(); // no reason: "+TERM <reason>" needs nats-server 2.10+
    // Keyed as reported (printable keeps 200 characters): a longer host's own count is found past 4096 hosts too.
    const clipped = host.slice(0, 200);
    const key = counts.has(clipped) || counts.size < 4096 ? clipped : "";
    const count = (counts.get(key) ?? 0) + 1;
    counts.set(key, count);
    const info = { subject: printable(m.subject), host: printable(host), reason: printable(reason), count };
    if (cb !== undefined) cb(info);
    else if (count === 1) {
      console.warn(`watchFleet: skipped a bad message on ${info.subject} (host ${info.host}): ${info.reason}`);
    }
  };
}

const TICK = Symbol("tick");

// A tick every min(waitMs / 4, 1 s), due() once per tick. race() makes one promise per call and forgets the last:
// racing a message against one long-lived timer promise would leave a reaction, and with it the message and its
// payload, on that promise per message until the timer fired.
function _ticker(waitMs: number) {
  const every = Math.max(10, Math.min(1000, waitMs / 4));
  let wake: (() => void) | undefined;
  let last = Date.now();
  const timer = setInterval(() => wake?.(), every);
  return {
    race: <V>(p: Promise<V>) =>
      new Promise<V | typeof TICK>((resolve, reject) => {
        wake = () => resolve(TICK);
        p.then(resolve, reject);
      }),
    due: () => Date.now() - last >= every && (last = Date.now(), true),
    stop: () => (clearInterval(timer), wake = undefined),
  };
}

// The seqs of a gap that never filled, as a loss marker (RETENTION: the stream no longer had them).
function _gapLoss([first, last]: readonly [number, number], host: string): FleetExitEvent {
  const ev = create(ExitEventSchema, {
    seq: BigInt(last),
    event: {
      case: "lost",
      value: {
        count: BigInt(last - first + 1),
        firstSeq: BigInt(first),
        lastSeq: BigInt(last),
        reason: LossReason.RETENTION,
      },
    },
  });
  return Object.assign(ev, { host });
}
