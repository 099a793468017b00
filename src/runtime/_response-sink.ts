/**
 * A streaming response's own sink of body bytes (core/subscription.ts
 * StreamSink) for the Node adapter: chunks go straight to the response's
 * write, the one @hono/node-server's writer sends the body's chunks to
 * (wrapped by the young streams' pacing, which therefore paces both), and
 * 'drain' says when it takes more.
 */
import type { StreamSink } from "../core/subscription.ts";

/** The part of a Node response (ServerResponse, Http2ServerResponse) the sink writes to. */
export interface SinkTarget {
  write(chunk: Uint8Array): boolean;
  once(event: "drain", listener: () => void): unknown;
  readonly headersSent: boolean;
  readonly writableEnded: boolean;
  readonly destroyed: boolean;
}

/** The sink of `res`'s body. */
export function responseSink(res: SinkTarget): StreamSink<Uint8Array> {
  return {
    // @hono/node-server writes each chunk of a body a few promise turns after it pulls it, never an event-loop turn
    // later: once the turn is over, what was pulled is with the response, and its head is sent with the first.
    start: () => new Promise((resolve) => setImmediate(() => resolve(writable(res)))),
    send: (chunk) => res.write(chunk),
    whenDrained: (fn) => void res.once("drain", fn),
  };
}

function writable(res: SinkTarget): boolean {
  return res.headersSent && !res.writableEnded && !res.destroyed;
}
