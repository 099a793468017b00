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

/** `sink` with each message framed by `frame`. */
export function framedSink(sink: StreamSink<Uint8Array>, frame: (m: Message) => Uint8Array): StreamSink<Message> {
  return { start: () => sink.start(), send: (m) => sink.send(frame(m)), whenDrained: (fn) => sink.whenDrained(fn) };
}

/** `sink` telling `each` every chunk it sends (the access log's byte count). */
export function tappedSink(sink: StreamSink<Uint8Array>, each: (chunk: Uint8Array) => void): StreamSink<Uint8Array> {
  return {
    start: () => sink.start(),
    send: (chunk) => (each(chunk), sink.send(chunk)),
    whenDrained: (fn) => sink.whenDrained(fn),
  };
}
