/**
 * Domain conditions of the listener core, as small named classes. They carry
 * no protocol: the RPC edge (rpc/errors.ts) maps each to a status code.
 */

/** Most characters of a client's value that an error message or an ErrorDetail echoes. */
export const ECHO_MAX = 64;

/**
 * A client's value as an error echoes it: at most `max` characters (never
 * half a surrogate pair), then "…" and the value's length when it was cut.
 * An error must stay small whatever the request held: gRPC carries the
 * message and the details in HTTP/2 trailers, which a client refuses past
 * its header size limit (a 30 KB listener id once reset the stream instead
 * of answering NOT_FOUND).
 */
export function clip(value: string, max = ECHO_MAX): string {
  return value.length <= max ? value : `${head(value, max)}… (${value.length} characters)`;
}

/** A client's value quoted for a message: JSON-escaped, and clipped as clip() does. */
export function quote(value: string, max = ECHO_MAX): string {
  return value.length <= max
    ? JSON.stringify(value)
    : `${JSON.stringify(`${head(value, max)}…`)} (${value.length} characters)`;
}

function head(value: string, max: number): string {
  return value.slice(0, /[\ud800-\udbff]/.test(value[max - 1] ?? "") ? max - 1 : max);
}

/**
 * No listener has this id for the caller (never existed, deregistered, reaped,
 * or another principal's: said the same way, so as not to tell which).
 */
export class ListenerNotFoundError extends Error {
  override readonly name = "ListenerNotFoundError";
  readonly listenerId: string;
  /**
   * Why a stream of the listener ended, when it was removed while streamed
   * (deregistered by its owner, or by an admin); undefined when a request
   * named an id the server does not have.
   */
  readonly removed: string | undefined;
  constructor(id: string, removed?: string) {
    const which = quote(id);
    super(
      removed === undefined
        ? `no listener ${which}: it was never registered, was deregistered, its lease expired, or it is another ` +
          "principal's; Register a new one (without listener_id), and GetInfo with listeners: true lists yours"
        : `listener ${which} was deregistered while streamed (${removed}); its queued events were sent`,
    );
    this.listenerId = id;
    this.removed = removed;
  }
}

/**
 * A server limit was reached. `retryAfterMs` is set where the refusal is
 * about the moment (a call rate, calls or counts under way now) and the same
 * request, unchanged, is likely to be admitted after that long; a limit the
 * caller must act on (its streams, its listeners, a request too large) has none.
 */
export class LimitExceededError extends Error {
  override readonly name = "LimitExceededError";
  readonly retryAfterMs: number | undefined;
  constructor(message: string, options: { retryAfterMs?: number } = {}) {
    super(message);
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** A resume position (after_seq) this listener never sent. */
export class SeqOutOfRangeError extends Error {
  override readonly name = "SeqOutOfRangeError";
}

/** Another stream took this listener over; this one must not retry. */
export class StreamTakenOverError extends Error {
  override readonly name = "StreamTakenOverError";
}

/** The server is shutting down; the client may reconnect later or elsewhere. */
export class ShuttingDownError extends Error {
  override readonly name = "ShuttingDownError";
}

/**
 * A stream's client took no batch for a lease while the memory budget was
 * past its limit and its principal over its fair share (ListenerRegistry.endStalled):
 * the stream ends, giving back the batch it held. Its listener stays; a resume
 * (after_seq) replays what it still retains.
 */
export class StreamStalledError extends Error {
  override readonly name = "StreamStalledError";
}
