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
    start: () => headSent(res),
    send: (chunk) => res.write(chunk),
    whenDrained: (fn) => void res.once("drain", fn),
  };
}

/** How many timer turns to wait for @hono/node-server to send the head (it reads ahead for one first). */
const HEAD_WAIT_TURNS = 50;

// Whether the response's head went out with it still open (polled after this turn, then on each timer turn, up to
// HEAD_WAIT_TURNS: counted in turns, not time, as a busy loop delays @hono/node-server's timer as much as these).
// @hono/node-server sends the head and writes every chunk of the body it has read in one synchronous step, after
// reading ahead (a second chunk, waiting a timer's turn for it): once the head is sent, the opening message, which
// the sink is started after, is with the response.
async function headSent(res: SinkTarget): Promise<boolean> {
  await new Promise((resolve) => setImmediate(resolve));
  for (let turn = 0; !res.headersSent && turn < HEAD_WAIT_TURNS; turn++) {
    if (res.destroyed || res.writableEnded) return false;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return res.headersSent && !res.writableEnded && !res.destroyed;
}
