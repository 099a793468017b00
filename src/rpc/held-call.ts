/**
 * The runtime adapter's count of a request as a call under way (Node's: see
 * TaskwireServer.holdCall), passed to the handlers in Connect's context
 * values. Every request is counted from its arrival until its response is
 * delivered, a response the client does not read being held in memory; a
 * SubscribeExits stream, once admitted as a stream (and counted among
 * streams, its events charged to the memory budget), lets its count go.
 * A refused stream request keeps it, like any other refusal.
 */
import { createContextKey } from "@connectrpc/connect";

/** What a handler may do with its request's count. */
export interface CallHold {
  /** Ends the count (once): the request is no longer a call under way. */
  release(): void;
}

/** The context key; where no adapter counts (Deno, Bun, tests calling handlers), releasing does nothing. */
export const HELD_CALL = createContextKey<CallHold>({ release() {} }, { description: "taskwire call under way" });
