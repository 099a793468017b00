import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { type CallOptions, Code, ConnectError, createContextValues } from "@connectrpc/connect";
import {
  type ExitEvent,
  ExitEventSchema,
  type ExitFilterSchema,
  type HostIdentity,
  LossReason,
  type OverflowPolicy,
  RegisterRequestSchema,
  SubscribeExitsRequestSchema,
} from "./gen/taskwire/v1/taskstats_pb.ts";
import { SINGLE_ATTEMPT, type TaskwireClient } from "./client.ts";
import { sleep } from "./_sleep.ts";
import { checkRequest } from "./_request-checks.ts";
import { retryAfterMs, toTaskwireError } from "./errors.ts";
import { clientSide, deregistered, endedWithoutError, listenerGone, retryable } from "./_watch-errors.ts";
import { createWatchdog } from "./_watchdog.ts";

/** What the server said when a stream opened. */
export interface Subscribed {
  readonly listenerId: string;
  readonly cpumask: string;
  /** The host the events come from (hostname, boot_id, machine_id, source); unset from servers before 0.2. */
  readonly host?: HostIdentity | undefined;
}

/** Why and when watchExits reconnects. */
export interface Reconnecting {
  /** 1 for the first retry after a failure, 2 for the next... */
  readonly attempt: number;
  readonly error: ConnectError;
  readonly delayMs: number;
}

/** Options of watchExits: exactly one of `cpumask` and `listenerId`. */
export type WatchExitsOptions =
  & ({ cpumask: string; listenerId?: undefined } | { listenerId: string; cpumask?: undefined })
  & {
    /** Queue size for a listener made from `cpumask` (0 or unset: the server default). */
    buffer?: number;
    /** Overflow policy for a listener made from `cpumask`. */
    overflow?: OverflowPolicy;
    /** Most events per stream message (unset: the server default). */
    maxBatch?: number;
    /**
     * Heartbeat interval on idle streams, ms (unset or 0: the server's
     * default, 15 s unless its --heartbeat-ms says otherwise; the stream's
     * opening message tells which).
     */
    heartbeatMs?: number;
    /** Only these TaskStats fields, by kernel name ("ac_comm", ...). */
    fields?: string[];
    /** Server-side filter: tgids, uids, comm prefix, nonzero exit. */
    filter?: MessageInitShape<typeof ExitFilterSchema>;
    /**
     * Reconnect with backoff and resume after a dropped stream (default true).
     * With `cpumask`, the listener is registered (so it outlives a dropped
     * connection for its lease) and deregistered when the iteration ends.
     * false: one stream; with `cpumask`, an ephemeral listener that dies with it.
     */
    resume?: boolean;
    /** Backoff between reconnects (defaults: 100 ms doubling to 5 s, unlimited attempts). */
    backoff?: { initialMs?: number; maxMs?: number; maxAttempts?: number };
    /** Ends the iteration (and the server-side stream) when aborted. */
    signal?: AbortSignal;
    /** Called each time the server confirms a (re)subscription, before its events. */
    onSubscribed?: (info: Subscribed) => void;
    /** Called before each reconnect attempt. */
    onReconnect?: (info: Reconnecting) => void;
    /**
     * Called once as the iterator deregisters the listener it registered
     * (`cpumask` given; the iteration ended or `signal` aborted), with the
     * server's answer (a promise that never rejects): a process about to exit
     * awaits it, so that the listener is gone rather than left to its lease.
     */
    onRelease?: (deregistered: Promise<void>) => void;
  };

/** The server's default heartbeat interval, ms: assumed until a stream's opening message says its own. */
const DEFAULT_HEARTBEAT_MS = 15_000;

/** The longest heartbeat interval a taskwire server takes (--heartbeat-ms), ms. */
const MAX_HEARTBEAT_MS = 600_000;

/**
 * Iterates a listener's events: exits, and `lost` events that account for
 * every record this listener did not get (received + lost = produced).
 * Heartbeats are consumed silently. With `resume` (the default) a dropped
 * stream is resumed where it stopped; if the server lost the listener
 * (restart, expired lease) it is registered again and the gap is reported as
 * a `lost` event with reason RESTART and `countUnknown` — never silently.
 * A listener deregistered while it is streamed (by its owner from elsewhere,
 * or an admin) ends the iteration with ListenerNotFoundError (`removed` says
 * why) after the events it had queued; a `cpumask` watch is not registered
 * again then, as that would undo the deregistration. The iteration never
 * ends on its own without an error. A stream silent for three heartbeat
 * intervals (of time the event loop ran, while the loop waits for the next
 * event, not while the consumer holds one) is dead: it is resumed.
 * Breaking out of the loop or aborting `signal` ends the server-side stream.
 */
export async function* watchExits(
  client: TaskwireClient,
  options: WatchExitsOptions,
): AsyncGenerator<ExitEvent, void, undefined> {
  if ((options.cpumask === undefined) === (options.listenerId === undefined)) {
    throw new TypeError("watchExits: pass exactly one of cpumask (CPUs to watch) or listenerId (from register)");
  }
  _checkRequests(options);
  if (options.resume === false) {
    yield* once(client, options);
    return;
  }
  yield* resuming(client, options);
}

/**
 * Encodes the requests this watch will send once, before any call: a value
 * out of range (a buffer past uint32, a non-integer) is the caller's mistake,
 * thrown at once as a RangeError rather than failing (and being retried) on
 * every attempt.
 */
function _checkRequests(options: WatchExitsOptions): void {
  const ints = { buffer: options.buffer, maxBatch: options.maxBatch, heartbeatMs: options.heartbeatMs };
  for (const [name, v] of Object.entries(ints)) {
    if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 0xffffffff)) {
      throw new RangeError(`watchExits: ${name} must be an integer in 0..4294967295, got ${String(v)}`);
    }
  }
  // A wait of 0, a negative one or NaN would reconnect in a tight loop (for ever, by default) instead of backing off.
  const { initialMs, maxMs, maxAttempts } = options.backoff ?? {};
  for (const [name, v] of Object.entries({ initialMs, maxMs })) {
    if (v !== undefined && !(typeof v === "number" && Number.isFinite(v) && v > 0)) {
      throw new RangeError(`watchExits: backoff.${name} must be a finite number of ms above 0, got ${String(v)}`);
    }
  }
  if (
    maxAttempts !== undefined &&
    !(typeof maxAttempts === "number" && maxAttempts >= 0 &&
      (Number.isInteger(maxAttempts) || maxAttempts === Infinity))
  ) {
    throw new RangeError(
      `watchExits: backoff.maxAttempts must be a whole number from 0 (or Infinity), got ${String(maxAttempts)}`,
    );
  }
  // A numeric field its type cannot hold, said with its name and range (the filter's tgids and uids: uint32).
  checkRequest("watchExits", SubscribeExitsRequestSchema, streamRequest(options));
  try {
    toBinary(SubscribeExitsRequestSchema, create(SubscribeExitsRequestSchema, streamRequest(options)));
    if (options.cpumask !== undefined) {
      toBinary(
        RegisterRequestSchema,
        create(RegisterRequestSchema, { cpumask: options.cpumask, buffer: options.buffer ?? 0 }),
      );
    }
  } catch (err) {
    throw new RangeError(`watchExits: a request cannot be encoded: ${(err as Error).message}`);
  }
}

type FilterInit = NonNullable<WatchExitsOptions["filter"]>;

/**
 * The filter, applied here too. The server filters from the moment a stream
 * opens; records queued for a listener before that (between Register and the
 * first stream, or while a resumed stream was away) were queued unfiltered.
 * A field the stream's field mask removed is not judged (the server judged it).
 */
function _clientFilter(f: FilterInit | undefined): ((ev: ExitEvent) => boolean) | undefined {
  if (f === undefined) return undefined;
  const tgids = f.tgids?.length ? new Set(f.tgids) : undefined, uids = f.uids?.length ? new Set(f.uids) : undefined;
  const prefix = f.commPrefix ?? "", nonzero = f.nonzeroExit === true;
  return (ev) => {
    if (ev.event.case !== "exit") return true;
    const { tgid, pidStats: s } = ev.event.value;
    if (tgids !== undefined && !tgids.has(tgid)) return false;
    if (uids !== undefined && s?.acUid !== undefined && !uids.has(s.acUid)) return false;
    if (prefix !== "" && s?.acComm !== undefined && !s.acComm.startsWith(prefix)) return false;
    return !(nonzero && s?.acExitcode === 0);
  };
}

function streamRequest(options: WatchExitsOptions) {
  return {
    maxBatch: options.maxBatch ?? 0,
    heartbeatMs: options.heartbeatMs ?? 0,
    fields: options.fields ?? [],
    ...(options.filter !== undefined && { filter: options.filter }),
  };
}

function linked(signal: AbortSignal | undefined): { ctl: AbortController; unlink: () => void } {
  const ctl = new AbortController();
  const onAbort = () => ctl.abort(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  if (signal?.aborted) ctl.abort(signal.reason);
  return { ctl, unlink: () => signal?.removeEventListener("abort", onAbort) };
}

async function* once(client: TaskwireClient, options: WatchExitsOptions): AsyncGenerator<ExitEvent, void, undefined> {
  const { ctl, unlink } = linked(options.signal);
  const matches = _clientFilter(options.filter);
  try {
    const stream = client.subscribeExits({
      ...streamRequest(options),
      cpumask: options.cpumask ?? "",
      listenerId: options.listenerId ?? "",
      buffer: options.buffer ?? 0,
      ...(options.overflow !== undefined && { overflow: options.overflow }),
    }, { signal: ctl.signal });
    let listenerId = options.listenerId ?? "";
    for await (const msg of stream) {
      if (msg.listenerId !== "") {
        listenerId = msg.listenerId;
        options.onSubscribed?.({ listenerId: msg.listenerId, cpumask: msg.cpumask, host: msg.host });
      }
      for (const ev of msg.events) if (matches === undefined || matches(ev)) yield ev;
    }
    if (!ctl.signal.aborted) throw endedWithoutError(listenerId);
  } catch (err) {
    // The caller's signal ends the watch quietly, as it ends a resuming one (connect-es throws CANCELED for it).
    if (ctl.signal.aborted) return;
    throw err;
  } finally {
    unlink();
    ctl.abort();
  }
}

async function register(client: TaskwireClient, options: WatchExitsOptions, signal: AbortSignal): Promise<string> {
  const res = await client.register({
    cpumask: options.cpumask!,
    buffer: options.buffer ?? 0,
    ...(options.overflow !== undefined && { overflow: options.overflow }),
  }, { ...oneAttempt(), signal });
  return res.listenerId;
}

// The watch's own unary calls are sent once each: its reconnect loop does the waiting (and counts the attempts), so
// the client's retries would multiply its own, unseen by onReconnect and maxAttempts.
function oneAttempt(): CallOptions {
  return { contextValues: createContextValues().set(SINGLE_ATTEMPT, true) };
}

function restartLoss(afterSeq: bigint): ExitEvent {
  return create(ExitEventSchema, {
    seq: afterSeq,
    event: {
      case: "lost",
      value: { count: 0n, firstSeq: afterSeq + 1n, lastSeq: 0n, reason: LossReason.RESTART, countUnknown: true },
    },
  });
}

async function* resuming(
  client: TaskwireClient,
  options: WatchExitsOptions,
): AsyncGenerator<ExitEvent, void, undefined> {
  const { ctl, unlink } = linked(options.signal);
  const initialMs = options.backoff?.initialMs ?? 100, maxMs = options.backoff?.maxMs ?? 5000;
  const maxAttempts = options.backoff?.maxAttempts ?? Infinity;
  // A stream silent for three heartbeats is dead (a half-open connection); reconnect. Without heartbeatMs the
  // server's default applies, which its opening message tells (a server's --heartbeat-ms may be up to 10 minutes).
  const heartbeatAsked = options.heartbeatMs || undefined;
  let idleMs = 3 * (heartbeatAsked ?? DEFAULT_HEARTBEAT_MS);
  const owned = options.cpumask !== undefined;
  const matches = _clientFilter(options.filter);
  let listenerId = options.listenerId;
  let afterSeq = 0n;
  let attempt = 0;
  // A listener this iterator registered goes with it (best effort; its lease reaps it otherwise).
  // Hung on the abort signal too: an iterator parked at a yield never reaches its finally.
  const release = () => {
    if (owned && listenerId !== undefined) {
      // Sent whether or not anyone awaits it (an optional call would skip its argument, the request with it).
      const deregistered = client.deregister({ listenerId, cpumask: "all" }, oneAttempt()).then(() => {}, () => {});
      options.onRelease?.(deregistered);
    }
    listenerId = undefined;
  };
  ctl.signal.addEventListener("abort", release, { once: true });
  try {
    for (;;) {
      const attemptCtl = new AbortController();
      const stopAttempt = () => attemptCtl.abort();
      ctl.signal.addEventListener("abort", stopAttempt, { once: true });
      const idle = createWatchdog(
        () => idleMs,
        () =>
          attemptCtl.abort(new ConnectError("no message or heartbeat within 3 heartbeat intervals", Code.Unavailable)),
      );
      let opened = false; // this attempt's stream opened: the server had the listener
      try {
        listenerId ??= await register(client, options, ctl.signal);
        idle.touch();
        const stream = client.subscribeExits({ ...streamRequest(options), listenerId, afterSeq }, {
          signal: attemptCtl.signal,
        });
        for await (const msg of stream) {
          idle.stop(); // the time the consumer holds an event is not the stream's silence
          attempt = 0;
          opened = true;
          if (msg.listenerId !== "") {
            if (heartbeatAsked === undefined && msg.heartbeatMs > 0) {
              // At most a taskwire server's longest (10 minutes): three of a larger one would overflow a timer (Node
              // fires it at once), and every stream would be judged dead a second later, over and over.
              idleMs = 3 * Math.min(msg.heartbeatMs, MAX_HEARTBEAT_MS);
            }
            options.onSubscribed?.({ listenerId: msg.listenerId, cpumask: msg.cpumask, host: msg.host });
          }
          for (const ev of msg.events) {
            afterSeq = ev.seq;
            if (matches === undefined || matches(ev)) yield ev;
          }
          idle.touch();
        }
        throw endedWithoutError(listenerId);
      } catch (e) {
        if (ctl.signal.aborted) return;
        const err = ConnectError.from(attemptCtl.signal.reason instanceof ConnectError ? attemptCtl.signal.reason : e);
        if (listenerGone(err) && deregistered(err, opened)) {
          // Someone removed the listener while it was read: registering it again would undo that.
          if (owned) listenerId = undefined; // nothing left to release
          throw toTaskwireError(err);
        }
        if (listenerGone(err) && owned && listenerId !== undefined) {
          // The server no longer has the listener (it restarted, or the lease ran out): start over and say so.
          listenerId = undefined;
          if (afterSeq > 0n) yield restartLoss(afterSeq);
          afterSeq = 0n;
          continue;
        }
        const asked = retryAfterMs(err); // a refusal for the moment (the server's stream or call limits)
        if ((!retryable(err) && asked === undefined) || clientSide(err) || ++attempt > maxAttempts) {
          throw toTaskwireError(err);
        }
        // At least what the server asked for, but no longer than the backoff's longest wait (a server's word is
        // not to park a watch for days).
        const backoffMs = Math.min(maxMs, initialMs * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
        const delayMs = Math.min(maxMs, Math.max(asked ?? 0, backoffMs));
        options.onReconnect?.({ attempt, error: err, delayMs });
        await sleep(delayMs, ctl.signal);
        if (ctl.signal.aborted) return;
      } finally {
        idle.stop();
        ctl.signal.removeEventListener("abort", stopAttempt);
        attemptCtl.abort();
      }
    }
  } finally {
    unlink();
    ctl.abort(); // runs release() once
  }
}
