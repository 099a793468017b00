/**
 * One subscription to a listener: drains its queue in batches (whatever is
 * queued, up to a cap: one event when traffic is light, many when it is
 * heavy) only as fast as the consumer pulls, with heartbeats when idle.
 * What each step becomes on the wire is the caller's `encode`; the core only
 * decides when to send what. Cleanup hangs on the abort signal, since a
 * generator's `finally` does not run reliably after a client cancels on
 * HTTP/2.
 */
import type { CpuRecord } from "./event-queue.ts";
import { ListenerNotFoundError, ShuttingDownError, StreamStalledError, StreamTakenOverError } from "./errors.ts";
import type { Listener } from "./listener.ts";
import type { StreamEnd } from "./listener-options.ts";
import type { ListenerRegistry } from "./registry.ts";
import type { StreamItem } from "./retention.ts";

/** Turns a subscription's steps into messages of the caller's type M. */
export interface StepEncoder<R extends CpuRecord, P, M> {
  /** The opening message: the kernel is listening. */
  open(): M;
  /** A batch of events (exits and loss markers, in seq order). */
  batch(items: readonly StreamItem<R, P>[]): M;
  /** Nothing happened for `heartbeatMs`. */
  heartbeat(): M;
  /**
   * The bytes a batch's message `m` holds as the transport sends it, where
   * they are known once it is made (binary encodings): the batch is then
   * charged that, and its records let go, while the stream waits for its
   * transport (Listener.encoded). Undefined: the batch keeps its records.
   */
  sizeOf?(m: M): number | undefined;
}

/**
 * A transport that takes a stream's messages as they are made, past the
 * async iterators between the subscription and the socket (the Node
 * adapter's response): each of them costs a promise turn per message, and
 * the first batch after an idle spell runs all of them cold. Every message
 * after the opening one then goes to the sink, and none through the
 * generator (only the end-of-stream message, after the last), so the two
 * paths never carry messages at the same time and none can overtake another.
 */
export interface StreamSink<M> {
  /**
   * Resolves once what the generator yielded so far is with the transport:
   * true if the sink can carry the rest, false to keep to the generator
   * (the response written is not the sink's, or it is over).
   */
  start(): Promise<boolean>;
  /** Sends `m` now; false when the transport wants no more until `whenDrained` calls back. */
  send(m: M): boolean;
  /** Calls `fn` once, when the transport takes more again. */
  whenDrained(fn: () => void): void;
}

/**
 * Shares out, between streams whose batches are dear to encode (JSON, field
 * masks: connect-es builds and serializes messages of them as the generator
 * yields), a number of events per event-loop turn. Eight never-reading JSON
 * streams' first batches, serialized back to back in one turn, held the loop
 * 92-157 ms, and the exits that came due meanwhile came at once, past a
 * reading principal's fair share: it lost some to the budget.
 */
export interface EncodeGate {
  /** How many events (1..max) the stream may take now; waits for a later turn while this one's are spent. */
  admit(max: number): number | Promise<number>;
}

/** How a subscription runs. */
export interface SubscriptionOptions<R extends CpuRecord, P, M> {
  readonly maxBatch: number;
  readonly heartbeatMs: number;
  readonly signal: AbortSignal;
  readonly encode: StepEncoder<R, P, M>;
  /**
   * What to send before the queue, a batch at a time (a resumed stream's
   * replay, Listener.replayFrom): the next at most `max` items, none once
   * it is all sent. Called with 0 as the stream ends (the last batch is let go).
   */
  readonly replay?: ((max: number) => readonly StreamItem<R, P>[]) | undefined;
  /**
   * How long to wait after a partial batch before the next (0: at once).
   * The server lingers while its event loop is saturated, so batches grow
   * instead of the loop drowning in per-message overhead.
   */
  readonly lingerMs?: () => number;
  /**
   * Drops the stream at its transport, for a stream told it stalled (its
   * client took no batch for a lease, ListenerRegistry.endStalled): the generator waits
   * in a `yield` the transport never takes, so neither an error nor a return
   * would reach it. Without one, the stream ends only if its client reads again.
   */
  readonly abandon?: ((why: string) => void) | undefined;
  /** Where the messages after the opening one go, if the transport offers it (StreamSink). */
  readonly sink?: StreamSink<M> | undefined;
  /** For a stream whose batches are dear to encode: how many events it may take in this turn (EncodeGate). */
  readonly gate?: EncodeGate | undefined;
}

interface Ended {
  readonly why: string;
  readonly how: StreamEnd;
}

// How each end reaches the consumer, always as an error: a stream never ends
// silently while its consumer still reads. Takeover: another stream has the
// listener (do not retry). Shutdown: the server is going away (reconnect
// elsewhere or later). Removed: the listener was deregistered (by its owner
// from elsewhere, or an admin); raised only once its queue is sent, so the
// events produced before the removal still arrive.
const END_ERRORS: Record<StreamEnd, (id: string, why: string) => Error> = {
  takeover: (id, why) => new StreamTakenOverError(`listener ${id}: ${why}`),
  shutdown: (id, why) => new ShuttingDownError(`listener ${id}: ${why}`),
  removed: (id, why) => new ListenerNotFoundError(id, why),
  stalled: (id, why) =>
    new StreamStalledError(
      `listener ${id}: stream ended: ${why}; read the stream as it comes, or resume with after_seq`,
    ),
};

/** Whether `err` is how a subscription says its stream ended: taken over, shut down, its listener removed, or stalled. */
export function isStreamEnd(err: unknown): boolean {
  return err instanceof StreamTakenOverError || err instanceof ShuttingDownError ||
    err instanceof ListenerNotFoundError || err instanceof StreamStalledError;
}

type Registry<R extends CpuRecord, P> = Pick<ListenerRegistry<R, P>, "now" | "remove">;

/**
 * Streams `listener` until the consumer goes (the generator returns), or ends
 * with an error: another subscription takes over, the server shuts down, or
 * the listener is removed (after what it had queued).
 */
export async function* subscribe<R extends CpuRecord, P, M>(
  registry: Registry<R, P>,
  listener: Listener<R, P>,
  o: SubscriptionOptions<R, P, M>,
): AsyncGenerator<M> {
  const s = new _Signals(o.abandon);
  listener.attach(s.wake, s.end);
  const cleanup = (): void => {
    o.replay?.(0); // lets go of its last batch
    listener.detach(s.end, registry.now());
    // An ephemeral listener dies with the stream that has it: one taken over has another stream now.
    if (listener.ephemeral && !s.takenOver) registry.remove(listener, "its stream ended");
    s.release();
  };
  o.signal.addEventListener("abort", cleanup, { once: true });
  if (o.signal.aborted) cleanup();
  const live = (): boolean => !o.signal.aborted && s.ended === undefined;
  try {
    yield o.encode.open();
    const sink = o.sink !== undefined && (await o.sink.start()) ? o.sink : undefined;
    // A removed listener's replay runs to its end, as its queue does: the seqs it no longer retains
    // (retire() dropped them) come as one RETENTION loss. Any other end stops it before it makes a batch.
    const sending = (): boolean => !o.signal.aborted && (s.ended === undefined || s.ended.how === "removed");
    while (o.replay !== undefined && sending()) {
      // Awaited only when the gate makes it wait: no promise turn per batch otherwise.
      let max = admitted(o, o.maxBatch);
      if (typeof max !== "number") {
        max = await max;
        if (!sending()) break; // it ended while the gate held it: as if before the batch
      }
      const items = o.replay(max);
      if (items.length === 0) break;
      const message = o.encode.batch(items);
      if (sink === undefined) yield message;
      else await s.send(sink, message);
    }
    for (;;) {
      // An end is said even if the call was aborted since (its deadline passed): a removed listener's
      // stream, which would send its queue first, says so at once when it can no longer send it.
      if (s.ended !== undefined && (s.ended.how !== "removed" || o.signal.aborted)) {
        throw END_ERRORS[s.ended.how](listener.id, s.ended.why);
      }
      if (o.signal.aborted) return;
      if (listener.queue.length > 0) {
        let max = admitted(o, Math.min(listener.queue.length, o.maxBatch));
        if (typeof max !== "number") {
          max = await max;
          if (!sending() || listener.queue.length === 0) continue; // what the gate's wait changed is seen at the top
        }
        const { message, full } = encodeBatch(listener, o, max);
        if (sink === undefined) yield message;
        else await s.send(sink, message);
        const linger = full ? 0 : (o.lingerMs?.() ?? 0);
        if (linger > 0 && live()) await s.pause(linger);
        continue;
      }
      // A removed listener's stream ends once what it had queued is sent.
      if (s.ended !== undefined) throw END_ERRORS[s.ended.how](listener.id, s.ended.why);
      // Nothing queued: once the sink has taken the batch sent last (it did not say it was full, or it drained
      // since, which wakes this wait), that batch is not held. Held until the next take, a quiet listener's stream
      // whose client had read everything was dropped as stalled once the budget was past its limit. Without a sink
      // the transport's taking is not seen (a resumed generator may only mean it was read ahead), so it keeps the
      // batch held until the next take.
      if (sink !== undefined && !s.full) listener.sent(s.end);
      const woke = await s.waitFor(o.heartbeatMs);
      if (woke || listener.queue.length > 0 || !live()) continue;
      const heartbeat = o.encode.heartbeat();
      if (sink === undefined) yield heartbeat;
      else await s.send(sink, heartbeat);
    }
  } finally {
    o.signal.removeEventListener("abort", cleanup);
    cleanup();
  }
}

// The next batch taken from the listener's queue, encoded; the items are not kept (this function's frame ends before
// the stream waits in `yield`), so where the encoder knows the message's size they can be collected meanwhile.
function encodeBatch<R extends CpuRecord, P, M>(
  listener: Listener<R, P>,
  o: SubscriptionOptions<R, P, M>,
  max: number,
): { message: M; full: boolean } {
  const items = listener.take(max);
  const message = o.encode.batch(items);
  const bytes = o.encode.sizeOf?.(message);
  if (bytes !== undefined) listener.encoded(bytes);
  // Full (no linger after it) when it took the most a batch may hold or left events queued (the gate cut it short):
  // a take of what was queued is a partial batch, however many the gate admitted.
  return { message, full: items.length >= o.maxBatch || listener.queue.length > 0 };
}

// How many events the next batch may hold: `max`, or what the gate admits of it in this turn (waiting for one).
function admitted<R extends CpuRecord, P, M>(o: SubscriptionOptions<R, P, M>, max: number): number | Promise<number> {
  return o.gate === undefined ? max : o.gate.admit(max);
}

// The wake-ups a subscription waits on: new events, its end, a timer.
class _Signals {
  ended: Ended | undefined;
  /** Taken over at some point (a later end, e.g. "stalled", does not undo it: the listener is another stream's). */
  takenOver = false;
  readonly #abandon: ((why: string) => void) | undefined;
  #resolveWait: ((woke: boolean) => void) | undefined;
  #resolvePause: (() => void) | undefined;
  #resolveDrained: (() => void) | undefined;
  /** The last send to the sink filled it: the next waits for its 'drain'. */
  #full = false;
  /** When the current wait times out (performance.now() ms). */
  #deadline = 0;
  /** The heartbeat timer, armed while a wait is pending; it outlives waits that end sooner (see waitFor). */
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the armed timer fires (performance.now() ms). */
  #firesAt = 0;

  /** Whether the last send to the sink filled it and it has not drained since. */
  get full(): boolean {
    return this.#full;
  }

  readonly wake = (): void => {
    const r = this.#resolveWait;
    this.#resolveWait = undefined;
    r?.(true);
  };

  constructor(abandon: ((why: string) => void) | undefined) {
    this.#abandon = abandon;
  }

  readonly end = (why: string, how: StreamEnd): void => {
    this.ended = { why, how };
    if (how === "takeover") this.takenOver = true;
    this.release(how !== "removed"); // a removed listener's stream still sends its queue, as the sink takes it
    if (how === "stalled") this.#abandon?.(why);
  };

  /** Cuts short any pause or wait (a wait for the sink to drain too, unless told not to), and stops the heartbeat timer. */
  release(drained = true): void {
    this.#resolvePause?.();
    if (drained) this.#cutDrainWait();
    this.wake();
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Resolves true when woken, false after `ms`. A busy stream waits once per
   * batch, a thousand times a second and more: a timer set and cleared per
   * wait was a timer object and a timer-list insertion per message. So one
   * timer stays armed across waits; when it fires it ends the wait pending
   * then if that wait's time is up, and otherwise re-arms for what is left.
   */
  waitFor(ms: number): Promise<boolean> {
    this.#deadline = performance.now() + ms;
    if (this.#timer === undefined || this.#deadline < this.#firesAt) this.#arm(ms);
    return new Promise((resolve) => (this.#resolveWait = resolve));
  }

  // Whole milliseconds: Node keeps one timer list per duration, and fractional ones would each make a list.
  #arm(ms: number): void {
    clearTimeout(this.#timer);
    const whole = Math.ceil(ms);
    this.#firesAt = performance.now() + whole;
    this.#timer = setTimeout(this.#expire, whole);
  }

  readonly #expire = (): void => {
    this.#timer = undefined;
    if (this.#resolveWait === undefined) return; // no wait pending: the next one arms the timer again
    const left = this.#deadline - performance.now();
    if (left > 0) return this.#arm(left);
    const r = this.#resolveWait;
    this.#resolveWait = undefined;
    r(false);
  };

  /**
   * Sends `m` to `sink`, first waiting for the sink to take more if the
   * last send filled it; an end or an abort cuts that wait short, and `m`
   * is not sent. A send that fills the sink returns at once: the stream
   * then takes its next batch while the transport drains, as the iterators
   * it replaces did (each read one message ahead), so the queue has that
   * batch's room meanwhile.
   */
  async send<M>(sink: StreamSink<M>, m: M): Promise<void> {
    if (this.#full) await new Promise<void>((resolve) => (this.#resolveDrained = resolve));
    if (this.#full) return;
    if (sink.send(m)) return;
    this.#full = true;
    sink.whenDrained(this.#drained); // at once: a 'drain' before the next send is not missed
  }

  readonly #drained = (): void => {
    this.#full = false;
    this.#cutDrainWait();
    this.wake(); // a stream waiting for events with nothing queued now lets its last batch go (see subscribe)
  };

  #cutDrainWait(): void {
    const r = this.#resolveDrained;
    this.#resolveDrained = undefined;
    r?.();
  }

  /** A pause that only the end or an abort cuts short (new events do not). */
  pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#resolvePause = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#resolvePause = done;
    });
  }
}
