/**
 * Every error response carries taskwire's ErrorDetail, the ones connect-es
 * answers itself included. connect-es decodes a unary request (on all three
 * protocols) before it calls any interceptor, so a body that is not valid
 * protobuf or JSON, an envelope or protocol error, or a bad timeout header
 * is answered with connect-es's own ConnectError: no ErrorDetail (and, for
 * protobuf, INTERNAL). A streaming request is decoded inside the
 * interceptor chain. Hence two pieces: a router interceptor (a stream's
 * request errors surface from `next`) and, for unary methods, a handler
 * wrapper that completes an error response in its protocol's own form:
 * Connect's JSON error body, gRPC's trailers, gRPC-Web's trailer frame.
 * Streams' own errors already pass toConnectError; their responses are not
 * touched, nor is any successful response (a unary gRPC-Web response is
 * buffered: it is one message).
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type {
  Compression,
  UniversalHandler,
  UniversalServerRequest,
  UniversalServerResponse,
} from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorFromJsonBytes, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { findTrailerError, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import { toConnectError, withDetail } from "./errors.ts";
import { tapped } from "./tapped.ts";
import { handlerFacts } from "./universal.ts";

/** Router interceptor: whatever a call throws leaves it as a ConnectError with an ErrorDetail. */
export const errorDetailInterceptor: Interceptor = (next) => async (req) => {
  try {
    return await next(req);
  } catch (err) {
    throw toConnectError(err);
  }
};

/**
 * Wraps each unary handler so its error responses carry an ErrorDetail
 * (streaming handlers are returned as they are). `compression`: the
 * server's, to read an error body connect-es compressed.
 */
export function withErrorDetails(
  handlers: readonly UniversalHandler[],
  compression: readonly Compression[] = [],
): UniversalHandler[] {
  return handlers.map((handler) => {
    if (handler.method.methodKind !== "unary") return handler;
    const completed = async (req: UniversalServerRequest) => complete(await handler(req), compression);
    return Object.assign(completed, handlerFacts(handler));
  });
}

function complete(res: UniversalServerResponse, compression: readonly Compression[]): Promise<UniversalServerResponse> {
  if (res.trailer !== undefined) return Promise.resolve(grpc(res, res.trailer));
  const type = res.header?.get("content-type") ?? "";
  if (/^application\/grpc-web/i.test(type)) return grpcWeb(res, compression);
  if (res.status !== 200 && /^application\/json/i.test(type)) return connectUnary(res, compression);
  return Promise.resolve(res);
}

// The error a response carries, with an ErrorDetail; undefined when it has one already (or there is none).
function completed(err: ConnectError | undefined): ConnectError | undefined {
  if (err === undefined) return undefined;
  const details = err.details as ConstructorParameters<typeof ConnectError>[3]; // incoming ones, re-sent as they came
  const plain = new ConnectError(err.rawMessage, err.code, undefined, details);
  const fixed = withDetail(plain);
  return fixed === plain ? undefined : fixed;
}

// gRPC: the status is in the trailers, which are final once the body has been read.
function grpc(res: UniversalServerResponse, trailer: Headers): UniversalServerResponse {
  const patch = (): void => {
    const fixed = completed(findTrailerError(trailer));
    if (fixed === undefined) return;
    const status = setTrailerStatus(new Headers(), fixed);
    status.forEach((value, key) => trailer.set(key, value));
  };
  if (res.body === undefined) {
    patch();
    return res;
  }
  return { ...res, body: tapped(res.body, { end: (how) => how === "done" && patch() }) };
}

// gRPC-Web: the status is the trailer frame ending the body.
async function grpcWeb(
  res: UniversalServerResponse,
  compression: readonly Compression[],
): Promise<UniversalServerResponse> {
  if (res.body === undefined) return res;
  const bytes = await readAll(res.body);
  const frames = envelopes(bytes);
  const last = frames?.[frames.length - 1];
  if (last === undefined || (last.flags & trailerFlag) === 0) return { ...res, body: once(bytes) };
  let data = last.data;
  if ((last.flags & COMPRESSED) !== 0) {
    const c = compression.find((c) => c.name === res.header?.get("grpc-encoding"));
    if (c === undefined) return { ...res, body: once(bytes) };
    data = await c.decompress(data, MAX_ERROR_BYTES);
  }
  const trailer = trailerParse(data);
  const fixed = completed(findTrailerError(trailer));
  if (fixed === undefined) return { ...res, body: once(bytes) };
  setTrailerStatus(new Headers(), fixed).forEach((value, key) => trailer.set(key, value));
  const frame = encodeEnvelope(trailerFlag, trailerSerialize(trailer));
  const head = bytes.subarray(0, last.offset);
  const out = new Uint8Array(head.byteLength + frame.byteLength);
  out.set(head);
  out.set(frame, head.byteLength);
  return { ...res, body: once(out) };
}

// Connect unary: an error is a JSON body with the HTTP status its code implies.
async function connectUnary(
  res: UniversalServerResponse,
  compression: readonly Compression[],
): Promise<UniversalServerResponse> {
  if (res.body === undefined || res.header === undefined) return res;
  const bytes = await readAll(res.body);
  let json = bytes;
  const encoding = res.header.get("content-encoding");
  if (encoding !== null) {
    const c = compression.find((c) => c.name === encoding);
    if (c === undefined) return { ...res, body: once(bytes) };
    json = await c.decompress(bytes, MAX_ERROR_BYTES);
  }
  const fixed = completed(errorFromJsonBytes(json, undefined, new ConnectError("", Code.Unknown)));
  if (fixed === undefined) return { ...res, body: once(bytes) };
  const body = errorToJsonBytes(fixed, {});
  const header = new Headers(res.header);
  header.delete("content-encoding"); // the completed error goes uncompressed: identity is always accepted
  header.set("content-length", String(body.byteLength));
  return { ...res, status: codeToHttpStatus(fixed.code), header, body: once(body) };
}

const COMPRESSED = 0b00000001;
/** Largest error body decompressed to complete it (errors are small; a larger one is left as it is). */
const MAX_ERROR_BYTES = 64 * 1024;

interface Frame {
  readonly flags: number;
  readonly data: Uint8Array;
  /** Where its header starts in the body. */
  readonly offset: number;
}

// The body's enveloped messages (5-byte header: flags, big-endian length), or undefined if it is not one.
function envelopes(bytes: Uint8Array): Frame[] | undefined {
  const frames: Frame[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = 0; at < bytes.byteLength;) {
    if (at + 5 > bytes.byteLength) return undefined;
    const length = view.getUint32(at + 1);
    if (at + 5 + length > bytes.byteLength) return undefined;
    frames.push({ flags: bytes[at]!, data: bytes.subarray(at + 5, at + 5 + length), offset: at });
    at += 5 + length;
  }
  return frames;
}

function encodeEnvelope(flags: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + data.byteLength);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, data.byteLength);
  out.set(data, 5);
  return out;
}

async function readAll(body: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of body) {
    chunks.push(c);
    n += c.byteLength;
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(n);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

// deno-lint-ignore require-await
async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}
