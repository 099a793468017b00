/**
 * A stream's sink (core/subscription.ts StreamSink) from the runtime adapter
 * to SubscribeExits, through Connect's context values. The adapter offers
 * the bytes' sink of a streaming response it writes itself (Node's); the
 * Connect handler that frames messages as finished envelopes
 * (server/pre-encoded-streams.ts) makes it a sink of messages; only that
 * handler may, since only there the body is nothing but envelopes.
 */
import { createContextKey } from "@connectrpc/connect";
import type { Message } from "@bufbuild/protobuf";
import type { StreamSink } from "../core/subscription.ts";

/** The response's own sink of body bytes, where the adapter offers one. */
export const TRANSPORT_SINK = createContextKey<StreamSink<Uint8Array> | undefined>(undefined, {
  description: "taskwire: the response's sink of body bytes",
});

/** The sink of response messages, set by the handler that frames them (never by an adapter). */
export const MESSAGE_SINK = createContextKey<StreamSink<Message> | undefined>(undefined, {
  description: "taskwire: the response's sink of messages",
});

/** `sink` taking `A`s, each made what `sink` sends by `to` (framed as envelopes, or counted on the way). */
export function mappedSink<A, B>(sink: StreamSink<B>, to: (a: A) => B): StreamSink<A> {
  return { start: () => sink.start(), send: (a) => sink.send(to(a)), whenDrained: (fn) => sink.whenDrained(fn) };
}
