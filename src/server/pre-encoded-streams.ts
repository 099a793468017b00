/**
 * Server-streaming calls in the Connect protocol, binary, without response
 * compression (what the SDK and most programs use), with response messages
 * that carry their own envelope (rpc/fast-binary/pre-encoded.ts) sent as they
 * are. Every other call of the method (JSON, gRPC, gRPC-Web, compressed
 * responses) goes to connect-es's own handler, unchanged.
 *
 * This is connect-es's Connect stream handler (protocol-connect
 * handler-factory.js, createStreamHandler) with the response side in one
 * step: its four transforms (serialize, catch-and-end, compress, join) each
 * cost an async generator turn per message, and serialize and join each
 * allocate and copy the whole message. The request side, the handler
 * context, the interceptors and the end-of-stream message are connect-es's
 * own functions; test/pre-encoded-streams.test.ts holds the two handlers'
 * responses side by side.
 */
import { Code, ConnectError, createHandlerContext, createMethodImplSpec } from "@connectrpc/connect";
import type { DescMethodServerStreaming, Message } from "@bufbuild/protobuf";
import type { MethodImpl } from "@connectrpc/connect";
import {
  assertByteStreamRequest,
  compressionNegotiate,
  createMethodSerializationLookup,
  encodeEnvelope,
  pipe,
  transformDecompressEnvelope,
  transformInvokeImplementation,
  transformParseEnvelope,
  transformPrepend,
  transformSplitEnvelope,
  type UniversalHandler,
  type UniversalHandlerOptions,
  type UniversalServerRequest,
  type UniversalServerResponse,
  untilFirst,
  uResponseOk,
  validateUniversalHandlerOptions,
} from "@connectrpc/connect/protocol";
import {
  contentTypeStreamProto,
  createEndStreamSerialization,
  endStreamFlag,
  headerContentType,
  headerStreamAcceptEncoding,
  headerStreamEncoding,
  headerTimeout,
  parseContentType,
  parseTimeout,
} from "@connectrpc/connect/protocol-connect";
import { PRE_ENCODED_STREAM, preEncodedEnvelope } from "../rpc/fast-binary/pre-encoded.ts";
import { mappedSink, MESSAGE_SINK, TRANSPORT_SINK } from "../rpc/stream-sink.ts";
import { handlerFacts } from "../rpc/universal.ts";

/** A server-streaming method and its implementation. */
export interface StreamingMethod<M extends DescMethodServerStreaming = DescMethodServerStreaming> {
  readonly method: M;
  readonly impl: MethodImpl<M>;
}

/**
 * `handlers` (a router's), with `streaming`'s handler taking pre-encoded
 * envelopes on the calls that can carry them. `options` are the router's.
 */
export function withPreEncodedStreams<M extends DescMethodServerStreaming>(
  handlers: readonly UniversalHandler[],
  streaming: StreamingMethod<M>,
  options: Partial<UniversalHandlerOptions>,
): UniversalHandler[] {
  const opt = validateUniversalHandlerOptions(options);
  const fast = connectBinaryStream(streaming, opt);
  return handlers.map((handler) => {
    if (handler.method !== streaming.method) return handler;
    const either = (req: UniversalServerRequest) => {
      const compression = envelopeCompression(req, opt);
      return compression === undefined ? handler(req) : fast(req, compression);
    };
    return Object.assign(either, handlerFacts(handler));
  });
}

type Negotiated = ReturnType<typeof compressionNegotiate>;

// For a Connect stream POST in binary whose response will not be compressed (negotiation fails or picks none): the
// negotiation (its request compression, or the error the stream ends with); undefined for every other call.
function envelopeCompression(req: UniversalServerRequest, opt: UniversalHandlerOptions): Negotiated | undefined {
  if (req.method !== "POST") return undefined;
  const type = parseContentType(req.header.get(headerContentType));
  if (type === undefined || !type.stream || !type.binary) return undefined;
  const compression = compressionNegotiate(
    opt.acceptCompression,
    req.header.get(headerStreamEncoding),
    req.header.get(headerStreamAcceptEncoding),
    headerStreamAcceptEncoding,
  );
  return compression.response === null ? compression : undefined;
}

type Handle = (req: UniversalServerRequest, compression: Negotiated) => Promise<UniversalServerResponse>;

function connectBinaryStream<M extends DescMethodServerStreaming>(
  streaming: StreamingMethod<M>,
  opt: UniversalHandlerOptions,
): Handle {
  const spec = createMethodImplSpec<M>(streaming.method, streaming.impl);
  const serialization = createMethodSerializationLookup(spec.method, opt.binaryOptions, opt.jsonOptions, opt);
  const endStream = createEndStreamSerialization(opt.jsonOptions);
  const output = serialization.getO(true);
  return async function handle(req, compression) {
    assertByteStreamRequest(req);
    const timeout = parseTimeout(req.header.get(headerTimeout), opt.maxTimeoutMs);
    const context = createHandlerContext({
      ...spec,
      service: spec.method.parent,
      requestMethod: req.method,
      protocolName: "connect",
      // An over-limit timeout is refused below: a timer armed with it would overflow (TimeoutOverflowWarning).
      ...(timeout.timeoutMs !== undefined && timeout.error === undefined && { timeoutMs: timeout.timeoutMs }),
      ...(opt.shutdownSignal && { shutdownSignal: opt.shutdownSignal }),
      requestSignal: req.signal,
      requestHeader: req.header,
      url: req.url,
      responseHeader: { [headerContentType]: contentTypeStreamProto },
      ...(req.contextValues && { contextValues: req.contextValues }),
    });
    context.values.set(PRE_ENCODED_STREAM, true);
    const input = pipe(
      req.body,
      transformPrepend<Uint8Array>(() => {
        if (opt.requireConnectProtocolHeader && req.header.get("connect-protocol-version") !== "1") {
          throw new ConnectError('missing required header: set Connect-Protocol-Version to "1"', Code.InvalidArgument);
        }
        // Raised here to go out as the end-of-stream message, as connect-es does.
        if (compression.error) throw compression.error;
        if (timeout.error) throw timeout.error;
        return undefined;
      }),
      transformSplitEnvelope(opt.readMaxBytes),
      transformDecompressEnvelope(compression.request, opt.readMaxBytes),
      transformParseEnvelope(serialization.getI(true), endStreamFlag),
    );
    const messages = transformInvokeImplementation(spec, context, opt.interceptors)(input);
    const serialize = (message: Message): Uint8Array =>
      preEncodedEnvelope(message) ?? encodeEnvelope(0, output.serialize(message));
    const transport = context.values.get(TRANSPORT_SINK);
    if (transport !== undefined) context.values.set(MESSAGE_SINK, mappedSink(transport, serialize));
    const body = envelopes(messages[Symbol.asyncIterator](), context, {
      serialize,
      end: (error) =>
        encodeEnvelope(
          endStreamFlag,
          endStream.serialize({ metadata: context.responseTrailer, ...(error !== undefined && { error }) }),
        ),
    });
    // As connect-es: the first bytes before the response, so the implementation can still set headers.
    return { ...uResponseOk, body: await untilFirst(body), header: context.responseHeader };
  };
}

/** The handler context connect-es creates, with the abort() its handlers end a call with. */
type CallContext = ReturnType<typeof createHandlerContext>;

interface Framing {
  serialize(message: Message): Uint8Array;
  end(error: ConnectError | undefined): Uint8Array;
}

/**
 * The response body: each message's envelope, then the end-of-stream
 * message (with the error, if the implementation failed). A consumer that
 * stops early (the client went away) aborts the call and closes the
 * implementation, and gets no end-of-stream message.
 */
async function* envelopes(
  it: AsyncIterator<Message>,
  context: CallContext,
  framing: Framing,
): AsyncGenerator<Uint8Array> {
  let finished = false;
  try {
    for (;;) {
      let next: IteratorResult<Message>;
      try {
        next = await it.next();
      } catch (err) {
        finished = true;
        context.abort(err);
        yield framing.end(toEndError(err));
        return;
      }
      if (next.done === true) break;
      yield framing.serialize(next.value);
    }
    finished = true;
    context.abort();
    yield framing.end(undefined);
  } finally {
    if (!finished) {
      context.abort();
      await it.return?.();
    }
  }
}

function toEndError(err: unknown): ConnectError {
  return err instanceof ConnectError
    ? err
    : new ConnectError("internal error", Code.Internal, undefined, undefined, err);
}
