/**
 * A response message that carries its own wire bytes, for the transports
 * that can send them as they are (server/pre-encoded-streams.ts: Connect
 * streams in binary without compression). connect-es serializes each
 * response message into a buffer of its own and copies that again into an
 * envelope: two allocations and two copies of every batch, for every
 * subscriber, and the allocations' external memory drove the collector. A
 * handler that can skip that puts PRE_ENCODED_STREAM in the call's context
 * values; the stream then hands over each batch as one finished envelope.
 */
import { createContextKey } from "@connectrpc/connect";

/** Where a message keeps its finished envelope (flags, length, message bytes). */
export const PRE_ENCODED: unique symbol = Symbol("taskwire pre-encoded envelope");

/** A message that may carry its finished envelope. */
export type MaybePreEncoded = object & { [PRE_ENCODED]?: Uint8Array };

/** Set by a handler that sends PRE_ENCODED envelopes as they are (only it may: nothing else reads them). */
export const PRE_ENCODED_STREAM = createContextKey<boolean>(false, {
  description: "taskwire: the transport sends pre-encoded envelopes",
});

/** The envelope a message carries, if any. */
export function preEncodedEnvelope(message: MaybePreEncoded): Uint8Array | undefined {
  return message[PRE_ENCODED];
}
