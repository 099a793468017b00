/**
 * Domain conditions of the listener core, as small named classes. They carry
 * no protocol: the RPC edge (rpc/errors.ts) maps each to a status code.
 */

/** No listener has this id (never existed, deregistered or reaped). */
export class ListenerNotFoundError extends Error {
  override readonly name = "ListenerNotFoundError";
  readonly listenerId: string;
  constructor(id: string) {
    super(`no listener "${id}": it was never registered, was deregistered, or its lease expired; call Register again`);
    this.listenerId = id;
  }
}

/** A server limit was reached. */
export class LimitExceededError extends Error {
  override readonly name = "LimitExceededError";
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
