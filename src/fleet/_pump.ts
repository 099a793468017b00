/**
 * The publisher's pump: takes events off its listener's queue into a bounded
 * window of JetStream publishes, in seq order. A publish that fails (no
 * connection, no ack within the timeout) is retried, with the same message
 * id, before anything newer is taken: JetStream drops a retry of a message it
 * did store (Nats-Msg-Id, within the stream's duplicate window), and order
 * per host holds. While retries wait, the queue fills and overflows into a
 * loss marker (core/event-queue.ts), which is published in its place once
 * NATS acks again.
 *
 * Each take (up to MAX_EVENTS events, whatever is queued: one when traffic
 * is light, many under load) becomes one message per subject, i.e. per CPU
 * (loss markers of no one CPU: the `lost` subject), each carrying that
 * CPU's events of the take in seq order; one over NATS's size limits goes
 * as halves, halved again while one still is, and one NATS refuses for its
 * size is cut again to the limits read again (_message-cutter.ts). Batching is what makes publishing
 * cheap (a JetStream publish and its ack cost about as much as tens of
 * encoded events); a consumer restores the per-host seq order across the
 * CPUs' messages (the SDK's watchFleet does, clients/ts/src/_fleet-order.ts).
 * Every message of a batch carries the batch's seq range (BATCH_HEADER), and
 * the first one sent holds the batch's first seq: a consumer that starts
 * between two messages of a batch (a new consumer from "now", a durable one
 * that acked part of it) knows which of its seqs went to messages before
 * its start, instead of waiting on them as a gap. A batch is a take, cut
 * where its range would pass MAX_BATCH_SPAN seqs (a wide loss marker goes
 * alone), since a consumer takes a range only that far past its message.
 * A message sent again says so (RESENT_HEADER), with the last seq handed out
 * by then (see #resend).
 *
 * It takes from the queue itself rather than through Listener.take(): the
 * stream is the retention here, so keeping each handed-out event again in
 * the listener's retention ring (for RPC resumes) would only hold memory.
 */
import type { JetStreamClient, PubAck } from "@nats-io/jetstream";
import { firstSeqOf, lastSeqOf } from "../core/retention.ts";
import type { QueueItem } from "../core/event-queue.ts";
import type { StreamEnd } from "../core/listener-options.ts";
import type { ExitRecord } from "../kernel/exit-record.ts";
import type { FleetInfoState } from "../rpc/service.ts";
import type { ServerListener } from "../rpc/stream.ts";
import { describeFailure, FailureLog, type FailureReason, isSizeRefusal } from "./_publish-failure.ts";
import { batchHeader, MessageCutter, type Outgoing } from "./_message-cutter.ts";
import type { PumpLimits } from "./_message-limits.ts";

export { BATCH_HEADER, HEADER_ROOM, RESENT_HEADER } from "./_message-cutter.ts";

/** What the pump needs. */
export interface PumpOptions {
  readonly js: JetStreamClient;
  readonly listener: ServerListener;
  /** The stream's name, for messages. */
  readonly stream: string;
  readonly prefix: string;
  readonly host: string;
  readonly window: number;
  /** Pause after a partial take while messages are in flight, ms (0: none). */
  readonly lingerMs: number;
  readonly ackTimeoutMs: number;
  /**
   * The largest message (payload and headers) NATS and the stream take now:
   * the server's max_payload (it may change with the server reconnected to)
   * and the stream's max_msg_size (read again when NATS refuses a message for
   * its size). A CPU's events of a batch that encode to more go as several
   * messages.
   */
  readonly limits: PumpLimits;
  readonly log: (level: "info" | "warning", text: string) => void;
  /** While publishes fail, their cause is logged again this often, ms (default PROBLEM_LOG_MS). */
  readonly problemLogMs?: number | undefined;
}

/** While publishes fail, how often their cause is logged again, ms: an operator sees it persist, not a flood. */
export const PROBLEM_LOG_MS = 60_000;

/** The pump's counters: its share of the publisher's state, and what its listener produced. */
export interface PumpCounters
  extends Pick<FleetInfoState, "published" | "pending" | "queued" | "dropped" | "retries" | "lastError" | "unsent"> {
  /** Events its listener produced (seq of the last): what a consumer's received + lost adds up to. */
  readonly produced: number;
  /** Why publishes fail now ("" while they are acked). */
  readonly failing: FailureReason | "";
  /** Since when they fail, ms since the epoch (0 while they are acked). */
  readonly failingSince: number;
  /** Failed publishes so far, per reason. */
  readonly failures: Readonly<Record<FailureReason, number>>;
}

/** A running pump. */
export interface Pump {
  counters(): PumpCounters;
  /** Publishes what is queued and in flight, for at most `ms`, then stops. */
  drain(ms: number): Promise<void>;
  /** An error the NATS server sent on the connection (a status): logged at a bounded rate, named with failures. */
  serverError(err: unknown): void;
}

/** Most events in one take. */
export const MAX_EVENTS = 1024;

/**
 * Most seqs one batch spans, a loss marker alone excepted: well under the
 * 65,536 past its message a consumer accepts (the SDK's maxEarly). Exits
 * alone never reach it (a take holds at most 1,024 events); markers do.
 */
export const MAX_BATCH_SPAN = 4096;

// Retries wait this long at first, doubling up to RETRY_MAX_MS, so a NATS that is down is not flooded.
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2000;

/** Starts pumping `o.listener` (it attaches to the listener as its stream). */
export function createPump(o: PumpOptions): Pump {
  return new _Pump(o);
}

class _Pump implements Pump {
  readonly #o: PumpOptions;
  /** Tells one publisher run from the next: seqs start again at 1 when taskwire restarts. */
  readonly #run = randomRun();
  #inFlight = 0;
  #retry: Outgoing[] = [];
  #retryDelay = RETRY_MIN_MS;
  #published = 0;
  #retries = 0;
  readonly #failures: FailureLog;
  readonly #cutter: MessageCutter;
  /** Messages of #retry NATS refused for their size: the limits are read again, and each goes smaller. */
  readonly #tooLarge = new Set<Outgoing>();
  #ended = false;
  #stopped = false;
  #wakeUp: (() => void) | undefined;
  readonly #done: Promise<void>;

  constructor(o: PumpOptions) {
    this.#o = o;
    this.#failures = new FailureLog(o.log, o.problemLogMs ?? PROBLEM_LOG_MS);
    this.#cutter = new MessageCutter({ prefix: o.prefix, host: o.host, run: this.#run, limits: o.limits, log: o.log });
    o.listener.attach(this.#wake, this.#end);
    this.#done = this.#loop();
  }

  counters(): PumpCounters {
    const l = this.#o.listener;
    return {
      produced: l.produced,
      published: this.#published,
      pending: this.#inFlight + this.#retry.length,
      queued: l.queue.length,
      ...this.#cost(),
      lastError: this.#failures.current?.failure.text ?? "",
      failing: this.#failures.current?.failure.reason ?? "",
      failingSince: this.#failures.current?.since ?? 0,
      failures: this.#failures.counts,
      unsent: this.#cutter.unsent,
    };
  }

  serverError(err: unknown): void {
    this.#failures.serverError(err);
  }

  // Retries so far, and exits dropped (its listener's queue, the memory budget, or too large for any message NATS
  // takes; all published as loss markers).
  #cost(): { retries: number; dropped: number } {
    const l = this.#o.listener;
    const dropped = l.lost["subscriber-overflow"] + l.lost["memory-budget"] + this.#cutter.oversize;
    return { retries: this.#retries, dropped };
  }

  async drain(ms: number): Promise<void> {
    this.#ended = true;
    this.#wake();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.#done, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
    this.#stopped = true;
    this.#wake();
  }

  readonly #wake = (): void => {
    const w = this.#wakeUp;
    this.#wakeUp = undefined;
    w?.();
  };

  // The listener was removed (server shutdown, or an admin's Deregister) or taken over (an admin subscribed to it):
  // publish what is queued, then stop. Only a shutdown is expected.
  readonly #end = (why: string, how: StreamEnd): void => {
    if (!this.#ended) {
      const stopped = how === "shutdown" ? "" : "; publishing to NATS stopped until taskwire restarts";
      this.#o.log(how === "shutdown" ? "info" : "warning", `fleet: publisher listener ended (${why})${stopped}`);
    }
    this.#ended = true;
    this.#wake();
  };

  async #loop(): Promise<void> {
    const queue = this.#o.listener.queue;
    while (!this.#stopped) {
      if (this.#retry.length > 0) {
        if (this.#inFlight === 0) await this.#resend();
        else await this.#sleep();
      } else if (this.#inFlight < this.#o.window && queue.length > 0) {
        const items = this.#take(MAX_EVENTS);
        this.#sendItems(items);
        // A partial take under load: let the next one grow (fewer, fuller messages), as an RPC stream lingers.
        if (items.length < MAX_EVENTS && this.#inFlight > 1 && this.#o.lingerMs > 0 && !this.#ended) {
          await this.#sleep(this.#o.lingerMs);
        }
      } else if (this.#ended && this.#inFlight === 0 && queue.length === 0) {
        return;
      } else await this.#sleep();
    }
  }

  #take(max: number): QueueItem<ExitRecord>[] {
    const l = this.#o.listener;
    const items = l.queue.take(max);
    for (const item of items) if (item.kind === "exit") l.delivered++;
    if (items.length > 0) l.handedOut = lastSeqOf(items[items.length - 1]!);
    return items;
  }

  #sendItems(items: readonly QueueItem<ExitRecord>[]): void {
    for (const batch of batchesOf(items)) this.#sendBatch(batch);
  }

  // One message per CPU of the batch, in seq order within each; the Map keeps the CPUs in order of their first
  // item, so the first message sent holds the batch's first seq.
  #sendBatch(items: readonly QueueItem<ExitRecord>[]): void {
    const byCpu = new Map<number, QueueItem<ExitRecord>[]>();
    for (const item of items) {
      const cpu = item.kind === "exit" ? item.record.cpu : item.cpu;
      const list = byCpu.get(cpu);
      if (list === undefined) byCpu.set(cpu, [item]);
      else list.push(item);
    }
    const batch = `${firstSeqOf(items[0]!)}-${lastSeqOf(items[items.length - 1]!)}`;
    for (const [cpu, list] of byCpu) for (const m of this.#cutter.fitted(cpu, list, batch)) this.#send(m);
  }

  #send(m: Outgoing): void {
    if (this.#cutter.unsendable(m)) return;
    this.#inFlight++;
    this.#o.js.publish(m.subject, m.payload, { msgID: m.msgID, headers: m.headers, timeout: this.#o.ackTimeoutMs })
      .then((ack) => this.#acked(m, ack), (err: unknown) => this.#failed(m, err));
  }

  #acked(m: Outgoing, _ack: PubAck): void {
    this.#inFlight--;
    this.#published += m.events;
    this.#retryDelay = RETRY_MIN_MS;
    this.#failures.acked(this.#cost());
    this.#wake();
  }

  #failed(m: Outgoing, err: unknown): void {
    this.#inFlight--;
    const { stream, prefix, host, ackTimeoutMs } = this.#o;
    this.#failures.failed(describeFailure(err, m.subject, { stream, prefix, host, ackTimeoutMs }), this.#cost());
    if (isSizeRefusal(err)) this.#tooLarge.add(m);
    this.#retry.push(m);
    this.#wake();
  }

  // Every failed message again, in seq order, after a backoff. Each says it is sent again, with the last seq handed out
  // so far: every other message up to there was acked or is sent again now (nothing is in flight), and which of them
  // the stream holds before it (acked, or stored with the ack lost) only the stream's order tells its consumers. For
  // consumers that read only BATCH_HEADER (SDKs before RESENT_HEADER), it names as its batch all of that, from just
  // before its own first seq: one that sees it first starts after all of it, waiting on nothing; out of seq order
  // though, also when nothing was stored before it (an outage took a run's first messages), hence RESENT_HEADER.
  // One over the limits as known now (they were lowered since it was cut) goes cut again: as it was, it would be
  // refused for ever; so does one refused for its size, smaller whatever the limits known say (MessageCutter.smaller:
  // a loss marker no message holds is not sent again, so nothing blocks the pump for good).
  async #resend(): Promise<void> {
    await this.#sleep(this.#retryDelay);
    this.#retryDelay = Math.min(RETRY_MAX_MS, this.#retryDelay * 2);
    if (this.#tooLarge.size > 0) await this.#o.limits.reread({ wait: true });
    if (this.#stopped) return;
    const refit = (m: Outgoing) => this.#tooLarge.has(m) ? this.#cutter.smaller(m) : this.#cutter.refit(m);
    const batch = this.#retry.sort((a, b) => a.seq - b.seq).flatMap(refit);
    this.#retry = [];
    this.#tooLarge.clear();
    this.#retries += batch.length;
    const sent = this.#o.listener.handedOut;
    for (const m of batch) this.#send({ ...m, headers: batchHeader(`${m.seq - 1}-${sent}`, sent) });
  }

  // Until woken (new events, an ack, the end), or `ms` when given (a wake does not cut that short).
  #sleep(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      if (ms !== undefined) {
        setTimeout(resolve, ms);
        return;
      }
      this.#wakeUp = resolve;
    });
  }
}

/** A take cut into batches of at most MAX_BATCH_SPAN seqs each (an item wider than that alone); uncut, itself. */
export function batchesOf<I extends { kind: string; seq?: number; first?: number; last?: number }>(
  items: readonly I[],
): (readonly I[])[] {
  const out: (readonly I[])[] = [];
  let start = 0;
  for (let i = 1; i < items.length; i++) {
    if (lastSeqOf(items[i]!) - firstSeqOf(items[start]!) < MAX_BATCH_SPAN) continue;
    out.push(items.slice(start, i));
    start = i;
  }
  if (start === 0) return [items];
  out.push(items.slice(start));
  return out;
}

function randomRun(): string {
  const b = crypto.getRandomValues(new Uint8Array(4));
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}
