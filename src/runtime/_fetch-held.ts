/**
 * Requests counted as calls under way, for the Fetch API adapters (deno.ts,
 * bun.ts), as _held-calls.ts counts them for Node's: each from its arrival
 * until its response is delivered, or its client gone, as far as the runtime
 * tells: Deno's `completed` settles once the response is written to the
 * socket; Bun tells nothing, so there a count ends once Bun has taken the
 * body's last chunk (it pulls a streamed body as its socket drains, but
 * takes a unary response, one chunk, whole). SECURITY.md says what that
 * leaves uncounted.
 */
import type { Peer } from "../auth/authenticator.ts";
import { REFUSED_CALL_HEADERS } from "../rpc/held-call.ts";
import type { TaskwireServer } from "../server/server.ts";

/** How a Fetch API runtime reports a response over; undefined: watch its body (passBody). */
export type Delivered = Promise<unknown> | undefined;

/**
 * The adapter's fetch handler: authenticates the caller once, counts the
 * request (TaskwireServer.holdCall) and hands the app both. Over a limit, an
 * RPC goes on to its handler, which refuses a unary call in its own protocol;
 * any other path is answered 429 here. A Fetch API handler cannot reset a
 * stream or close a connection unanswered, so a caller past twice a limit
 * gets its refusal like one past the limit (each a small response).
 */
export function holdFetchCalls(
  server: TaskwireServer,
): (request: Request, peer: Peer, delivered: Delivered, close?: () => void) => Promise<Response> {
  const rpcs = new Set(server.rpcHandlers.map((h) => h.requestPath));
  return async (request, peer, delivered, close) => {
    const caller = server.caller(peer, request.headers.get("authorization"));
    const held = server.holdCall(caller);
    const over = createOver(held.release);
    delivered?.then(over.run, over.run);
    const path = pathOf(request.url);
    let abandon: (() => void) | undefined;
    // Server-streaming responses (SubscribeExits) are passed through a body of the adapter's own, so that a stream
    // whose client takes nothing can be dropped (CallHold.reset); where the runtime watches delivery, only those.
    // Which requests are streams is the app's routing's to say: it decodes and normalizes the path, so a stream
    // asked for at /taskwire.v1.TaskStats/%53ubscribeExits was kept from that drop when judged by the path here.
    let streamed = false;
    try {
      const response = held.refusal !== undefined && !rpcs.has(path) ? refused(held.refusal) : await server.fetch(
        request,
        {
          peer,
          auth: caller.auth,
          held: {
            refusal: held.refusal,
            handOver: (leave) => (held.release(), over.add(leave), true),
            reset: () => abandon !== undefined && (abandon(), true),
          },
          streaming: () => void (streamed = true),
        },
      );
      if (delivered !== undefined && !streamed) return response;
      return passBody(response, {
        over: delivered === undefined ? over.run : () => {},
        signal: request.signal,
        abandonable: (fn) => (abandon = () => (fn(), close?.())),
      });
    } catch (err) {
      over.run();
      throw err;
    }
  };
}

/**
 * The path of a request's URL, never throwing: the runtime builds the URL
 * from the request's Host, which a client may send empty, with a space or
 * without (HTTP/1.0 on Bun: a relative URL), and `new URL` throws on those.
 */
export function pathOf(url: string): string {
  const path = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*(.*)$/i.exec(url)?.[1] ?? url;
  return path.split(/[?#]/, 1)[0] || "/";
}

function refused(why: string): Response {
  return new Response(`${why}\n`, { status: 429, headers: REFUSED_CALL_HEADERS });
}

// Functions run once when the response is over; one added after that runs at once.
function createOver(first: () => void): { run: () => void; add: (fn: () => void) => void } {
  let fns: (() => void)[] | undefined = [first];
  return {
    run: () => {
      const due = fns ?? [];
      fns = undefined;
      for (const fn of due) fn();
    },
    add: (fn) => fns === undefined ? fn() : void fns.push(fn),
  };
}

/**
 * The error a dropped response's body is errored with (passBody's abandon):
 * the server meant it, so the adapters' error handlers (Deno.serve's onError)
 * do not log it as a failure (droppedQuietly).
 */
export class DroppedResponseError extends Error {
  override readonly name = "DroppedResponseError";
  constructor() {
    super("the stream's client took no batch for a lease while the memory budget was past its limit: dropped");
  }
}

/** An empty 500 for a runtime that reports a dropped response's error (DroppedResponseError) to its error handler; else undefined. */
export function droppedQuietly(err: unknown): Response | undefined {
  const dropped = err instanceof DroppedResponseError ||
    (err instanceof Error && err.cause instanceof DroppedResponseError);
  return dropped ? new Response(null, { status: 500 }) : undefined;
}

/** What passBody watches and offers. */
export interface PassBody {
  /** Called once the runtime has read the body's end, or cancelled it, or the client left (`signal`). */
  readonly over: () => void;
  readonly signal: AbortSignal;
  /** Given the function that errors the body (the runtime drops the response) and cancels the response's own. */
  readonly abandonable?: (abandon: () => void) => void;
}

/**
 * `response` with its body passed through a stream of the adapter's own,
 * one chunk at a time (no read-ahead), so the count lasts while the runtime
 * has not taken the body, and the body can be abandoned: errored, which a
 * runtime reads as a response that cannot be finished (it closes an HTTP/1.1
 * connection, resets an HTTP/2 stream).
 */
export function passBody(response: Response, o: PassBody): Response {
  const inner = response.body;
  if (inner === null) {
    o.over();
    return response;
  }
  o.signal.addEventListener("abort", o.over, { once: true });
  const reader = inner.getReader();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({
    start: (c) => void (controller = c),
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (!done) return controller.enqueue(value);
        controller.close();
      } catch (err) {
        controller.error(err);
      }
      o.over();
    },
    cancel(reason) {
      o.over();
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
  o.abandonable?.(() => {
    const why = new DroppedResponseError();
    try {
      controller.error(why);
    } catch { /* closed already */ }
    reader.cancel(why).catch(() => {});
    o.over();
  });
  return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
}
