/**
 * A streaming RPC response's body handed to the runtime adapter as it is (an
 * async iterable of byte chunks), for an adapter that writes it to its own
 * response object (Node). On the Fetch API path the body becomes a web
 * ReadableStream, which the adapter then reads chunk by chunk: two promise
 * machineries per message, on the path of every batch of exits. The first
 * batch after an idle spell runs that code cold, and it was a third of the
 * server's extra time to the socket there (BENCHMARKS.md, "The first batch
 * after idle").
 */
import { universalServerResponseToFetch } from "@connectrpc/connect/protocol";

/** Where the app leaves a streaming body for the adapter: one per request, made by the adapter. */
export interface StreamBodySlot {
  /** The Response the app returned with no body, for the adapter to write `body` under. */
  response?: Response;
  /** The body's chunks, each written as it comes. */
  body?: AsyncIterable<Uint8Array>;
}

/**
 * The Response for a streaming body: bodiless, with the body left in `slot`
 * for the adapter, when the adapter has a slot; else one with a ReadableStream.
 */
export function streamingResponse(
  status: number,
  header: Headers | undefined,
  body: AsyncIterable<Uint8Array>,
  slot: StreamBodySlot | undefined,
): Response {
  if (slot === undefined) return universalServerResponseToFetch({ status, body, ...(header && { header }) });
  const response = new Response(null, { status, ...(header && { headers: header }) });
  slot.response = response;
  slot.body = body;
  return response;
}

/**
 * What the adapter writes for the app's final response `res`: the slot's body
 * under `res` when `res` is the one the app left it with; a Response with
 * that body as a ReadableStream when something after the app replaced it
 * with its status (a middleware adding headers: CORS), status and headers
 * kept; `res` as it is, the body closed, when the replacement says something
 * else (an error page); undefined when the app left no body.
 */
export function claimStreamBody(
  slot: StreamBodySlot,
  res: Response,
): { body: AsyncIterable<Uint8Array> } | { response: Response } | undefined {
  const body = slot.body;
  if (body === undefined) return undefined;
  if (slot.response === res) return { body };
  if (res.status !== slot.response?.status || res.body !== null) {
    void Promise.resolve(body[Symbol.asyncIterator]().return?.()).catch(() => {});
    return { response: res };
  }
  return { response: universalServerResponseToFetch({ status: res.status, header: res.headers, body }) };
}
