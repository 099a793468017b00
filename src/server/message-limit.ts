/**
 * The request message size limit, enforced on the wire before a message is
 * buffered: a unary Connect body by its Content-Length (or, chunked, by the
 * bytes seen so far), an enveloped message (Connect streaming, gRPC-Web,
 * gRPC) by its 5-byte length prefix. connect-es's `readMaxBytes` makes the
 * same checks (and bounds decompressed sizes, which only it sees); this layer
 * runs first so the refusal names the limit and the flag that sets it, and
 * carries an ErrorDetail (LIMIT_EXCEEDED) like every other limit.
 *
 * A refusal is raised from the request body the handler reads, so connect-es
 * answers it in the call's own protocol (Connect, gRPC-Web, gRPC) with
 * RESOURCE_EXHAUSTED. The rest of the body is never read here: the transport
 * (hono's body cleanup, HTTP/2 flow control) stops the sender.
 */
import type { UniversalHandler, UniversalServerRequest } from "@connectrpc/connect/protocol";
import { LimitExceededError } from "../core/errors.ts";
import { toConnectError } from "../rpc/errors.ts";
import { handlerFacts } from "../rpc/universal.ts";

/**
 * Default cap on one request message, bytes. taskwire's requests are a few
 * hundred bytes (a cpumask, a filter, a field mask); a cpulist naming every
 * other CPU of an 8192-CPU machine is ~20 KiB.
 */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024;

const ENVELOPE_HEADER = 5;

/** Connect's unary content types carry one bare message; everything else is enveloped. */
function isBareUnary(handler: UniversalHandler, contentType: string | null): boolean {
  return handler.method.methodKind === "unary" && /^application\/(?:json|proto)(?:$|[;\s])/i.test(contentType ?? "");
}

function refusal(what: string, maxBytes: number): Error {
  return toConnectError(
    new LimitExceededError(
      `${what} exceeds the server's limit of ${maxBytes} bytes per request message (--max-message-bytes); send a smaller request, or raise --max-message-bytes on the server`,
    ),
  );
}

/** Wraps each handler so request messages over `maxBytes` are refused before they are buffered. */
export function limitMessageSize(handlers: readonly UniversalHandler[], maxBytes: number): UniversalHandler[] {
  if (!Number.isInteger(maxBytes) || maxBytes < 1) {
    throw new RangeError(`maxMessageBytes must be a byte count >= 1, got ${maxBytes}`);
  }
  return handlers.map((handler) => {
    const limited = (req: UniversalServerRequest) => handler(limitRequest(handler, req, maxBytes));
    return Object.assign(limited, handlerFacts(handler));
  });
}

function limitRequest(
  handler: UniversalHandler,
  req: UniversalServerRequest,
  maxBytes: number,
): UniversalServerRequest {
  const body = req.body;
  // A parsed JSON body (some frameworks parse it first) is already whole; connect-es's own check sees its size.
  if (body === null || typeof body !== "object" || !(Symbol.asyncIterator in body)) return req;
  const source = body as AsyncIterable<Uint8Array>;
  if (!isBareUnary(handler, req.header.get("content-type"))) {
    return { ...req, body: envelopesWithin(source, maxBytes) };
  }
  const declared = Number(req.header.get("content-length") ?? Number.NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    // connect-es refuses on Content-Length before reading too, in its own words: without the header it reads
    // this body, which refuses at once, so not a byte of it is read.
    const header = new Headers(req.header);
    header.delete("content-length");
    return { ...req, header, body: refused(refusal(`a request body of ${declared} bytes`, maxBytes)) };
  }
  return { ...req, body: bytesWithin(source, maxBytes) };
}

// deno-lint-ignore require-yield
async function* refused(err: Error): AsyncGenerator<Uint8Array> {
  throw err;
}

// The source's iterator is driven by hand and, on a refusal, left unfinished: finishing it would destroy the
// request, and with it (HTTP/1.1) the socket the refusal is about to be written to.
async function* bytesWithin(source: AsyncIterable<Uint8Array>, maxBytes: number): AsyncGenerator<Uint8Array> {
  const it = source[Symbol.asyncIterator]();
  let seen = 0;
  for (let r = await it.next(); r.done !== true; r = await it.next()) {
    seen += r.value.byteLength;
    if (seen > maxBytes) throw refusal(`a request body of more than ${maxBytes} bytes`, maxBytes);
    yield r.value;
  }
}

async function* envelopesWithin(source: AsyncIterable<Uint8Array>, maxBytes: number): AsyncGenerator<Uint8Array> {
  const it = source[Symbol.asyncIterator]();
  const head = new Uint8Array(ENVELOPE_HEADER);
  let headFilled = 0;
  let bodyLeft = 0; // bytes of the current message still to come
  for (let r = await it.next(); r.done !== true; r = await it.next()) {
    const chunk = r.value;
    for (let at = 0; at < chunk.byteLength;) {
      if (bodyLeft > 0) {
        const take = Math.min(bodyLeft, chunk.byteLength - at);
        bodyLeft -= take;
        at += take;
        continue;
      }
      const take = Math.min(ENVELOPE_HEADER - headFilled, chunk.byteLength - at);
      head.set(chunk.subarray(at, at + take), headFilled);
      headFilled += take;
      at += take;
      if (headFilled < ENVELOPE_HEADER) break;
      headFilled = 0;
      bodyLeft = new DataView(head.buffer).getUint32(1);
      if (bodyLeft > maxBytes) throw refusal(`a request message of ${bodyLeft} bytes`, maxBytes);
    }
    yield chunk;
  }
}
