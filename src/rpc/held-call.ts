/**
 * The runtime adapter's count of a request as a call under way (see
 * TaskwireServer.holdCall), passed to the handlers in Connect's context
 * values. Every request is counted from its arrival until its response is
 * delivered, since a response the client does not read is held in memory.
 * A SubscribeExits stream, once admitted as a stream, is counted among
 * streams instead, until its response is delivered too (handOver): a stream
 * that ended (a deadline, a takeover) while its client reads nothing still
 * holds its last message. A refused stream request stays a call under way,
 * like any other refusal.
 */
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { LimitExceededError } from "../core/errors.ts";

/** What a handler may do with its request's count. */
export interface CallHold {
  /** Why the request was over a limit of calls under way when it arrived (the adapter's verdict); else undefined. */
  readonly refusal: string | undefined;
  /**
   * Ends the count as a call under way now, and has `leave` called once the
   * response is delivered or its connection gone. False where nothing
   * watches the response (no adapter counts): the caller then calls `leave`
   * itself when its handler ends.
   */
  handOver(leave: () => void): boolean;
  /**
   * Drops the response at its transport, for a stream whose client takes
   * nothing, so that no error could reach it: an HTTP/2 stream is reset with
   * ENHANCE_YOUR_CALM (the gRPC spec maps it to RESOURCE_EXHAUSTED;
   * connect-node reports INTERNAL), an HTTP/1.1 connection closed, a Fetch
   * API response's body errored (Bun then closes its connection; Deno keeps
   * it until its client leaves). The handler's signal aborts as the
   * transport lets go. False where nothing can (no adapter).
   */
  reset(): boolean;
}

/** The context key; where no adapter counts (tests calling handlers, a fetch without an adapter), nothing is refused or handed over. */
export const HELD_CALL = createContextKey<CallHold>({ refusal: undefined, handOver: () => false, reset: () => false }, {
  description: "taskwire call under way",
});

/**
 * The headers of the plain 429 an adapter answers a non-RPC request with when
 * it arrived over a limit of calls under way: retry in a second, as the RPCs'
 * refusal says.
 */
export const REFUSED_CALL_HEADERS = { "content-type": "text/plain; charset=UTF-8", "retry-after": "1" } as const;

/**
 * Refuses a unary call that arrived over a limit of calls under way
 * (LimitExceededError); the same call may pass once the calls before it are
 * answered and read, so the refusal says to retry in a second.
 */
export function refuseIfOverCalls(ctx: Pick<HandlerContext, "values">): void {
  const refusal = ctx.values.get(HELD_CALL).refusal;
  if (refusal !== undefined) throw new LimitExceededError(refusal, { retryAfterMs: 1000 });
}
