/**
 * server/pre-encoded-streams.ts against connect-es's own Connect stream
 * handler, side by side: one implementation, the same requests, and the two
 * responses must be the same bytes (messages, end-of-stream, errors and
 * trailers), except that the pre-encoded one may send a message's envelope as
 * the implementation made it. The calls it must leave to connect-es reach
 * connect-es's handler.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createConnectRouter, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { compressionGzip } from "@connectrpc/connect-node";
import {
  createAsyncIterable,
  encodeEnvelope,
  type UniversalHandler,
  type UniversalHandlerOptions,
  type UniversalServerRequest,
} from "@connectrpc/connect/protocol";
import { describe, expect, it } from "vitest";
import {
  type SubscribeExitsRequest,
  SubscribeExitsRequestSchema,
  type SubscribeExitsResponse,
  SubscribeExitsResponseSchema,
  TaskStats,
} from "../src/gen/taskwire/v1/taskstats_pb.ts";
import { preEncodedBatch } from "../src/rpc/fast-binary/batch.ts";
import { PRE_ENCODED, PRE_ENCODED_STREAM } from "../src/rpc/fast-binary/pre-encoded.ts";
import { withPreEncodedStreams } from "../src/server/pre-encoded-streams.ts";

const method = TaskStats.method.subscribeExits;

/** What the implementation does, and what it saw. */
interface Script {
  /** Trailers to set, then this error to throw after the messages. */
  fail?: ConnectError | Error;
  /** Set when its generator is closed (finally ran). */
  closed?: boolean;
  /** PRE_ENCODED_STREAM in each call's context. */
  readonly preEncoded: boolean[];
  readonly signals: AbortSignal[];
}

// A batch whose envelope is also carried pre-encoded, built from its ordinary serialization: both handlers
// must then put the same bytes on the wire.
function batch(queued: number): SubscribeExitsResponse {
  const message = preEncodedBatch([{ kind: "lost", first: 1, last: 9, reason: "retention", cpu: 2 }], queued);
  return Object.assign(message, {
    [PRE_ENCODED]: encodeEnvelope(0, toBinary(SubscribeExitsResponseSchema, message)),
  });
}

function implementation(script: Script) {
  return async function* (req: SubscribeExitsRequest, ctx: HandlerContext) {
    script.preEncoded.push(ctx.values.get(PRE_ENCODED_STREAM));
    script.signals.push(ctx.signal);
    try {
      yield create(SubscribeExitsResponseSchema, { listenerId: `for ${req.cpumask}`, cpumask: req.cpumask });
      yield batch(3);
      yield batch(0);
      yield create(SubscribeExitsResponseSchema, { heartbeat: true });
      if (script.fail !== undefined) {
        ctx.responseTrailer.set("x-why", "scripted");
        throw script.fail;
      }
    } finally {
      script.closed = true;
    }
  };
}

function handlers(script: Script, options: Partial<UniversalHandlerOptions> = {}) {
  const impl = implementation(script);
  const router = createConnectRouter(options);
  router.rpc(method, impl);
  const original = router.handlers.find((h) => h.method === method)!;
  const wrapped = withPreEncodedStreams(router.handlers, { method, impl }, options).find((h) => h.method === method)!;
  return { original, wrapped };
}

const requestBody = (cpumask = "0-3") =>
  encodeEnvelope(0, toBinary(SubscribeExitsRequestSchema, create(SubscribeExitsRequestSchema, { cpumask })));

function request(
  o: { headers?: Record<string, string>; body?: Uint8Array; method?: string; signal?: AbortSignal } = {},
): UniversalServerRequest {
  return {
    httpVersion: "1.1",
    method: o.method ?? "POST",
    url: "http://localhost/taskwire.v1.TaskStats/SubscribeExits",
    header: new Headers({ "content-type": "application/connect+proto", ...o.headers }),
    body: createAsyncIterable([o.body ?? requestBody()]),
    signal: o.signal ?? new AbortController().signal,
    contextValues: createContextValues(),
  };
}

async function call(handler: UniversalHandler, req: UniversalServerRequest) {
  const res = await handler(req);
  const chunks: Uint8Array[] = [];
  for await (const chunk of res.body ?? []) chunks.push(chunk);
  const body = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  chunks.reduce((at, c) => (body.set(c, at), at + c.length), 0);
  return { status: res.status, contentType: res.header?.get("content-type"), body: [...body], trailer: res.trailer };
}

const newScript = (fail?: Error): Script => ({ preEncoded: [], signals: [], ...(fail && { fail }) });

/** The same request (made twice: a body is read once) through both handlers. */
async function sideBySide(make: () => UniversalServerRequest, script = newScript(), options = {}) {
  const { original, wrapped } = handlers(script, options);
  const theirs = await call(original, make());
  const ours = await call(wrapped, make());
  return { theirs, ours, script };
}

describe("pre-encoded Connect streams", () => {
  it("send exactly the bytes connect-es sends, taking the pre-encoded envelopes", async () => {
    const { theirs, ours, script } = await sideBySide(() => request());
    expect(ours).toEqual(theirs);
    expect(theirs.status).toBe(200);
    expect(theirs.contentType).toBe("application/connect+proto");
    expect(script.preEncoded).toEqual([false, true]); // only the pre-encoded handler offered them
  });

  it("send the envelope a message carries as it is, not the message's fields", async () => {
    const carried = encodeEnvelope(0, new Uint8Array([0x28, 0x07])); // queued: 7
    const message = Object.assign(create(SubscribeExitsResponseSchema, { queued: 3 }), { [PRE_ENCODED]: carried });
    const router = createConnectRouter();
    const impl = async function* () {
      yield message;
    };
    router.rpc(method, impl);
    const [wrapped] = withPreEncodedStreams(router.handlers, { method, impl }, {});
    const ours = await call(wrapped!, request());
    expect(ours.body.slice(0, carried.length)).toEqual([...carried]);
  });

  it("end with the same end-of-stream message when the implementation fails: error, code and trailers", async () => {
    for (
      const fail of [new ConnectError("scripted failure", Code.ResourceExhausted), new Error("not a ConnectError")]
    ) {
      const { theirs, ours } = await sideBySide(() => request(), newScript(fail));
      expect(ours).toEqual(theirs);
      const text = new TextDecoder().decode(new Uint8Array(ours.body));
      expect(text).toContain('"x-why":["scripted"]');
      expect(text).toContain(fail instanceof ConnectError ? "resource_exhausted" : '"code":"internal"');
    }
  });

  it("refuse bad requests as connect-es does (a broken envelope, a bad timeout, an unknown encoding)", async () => {
    const bad: (() => UniversalServerRequest)[] = [
      () => request({ body: new Uint8Array([0, 0, 0, 0, 9, 1]) }),
      () => request({ body: new Uint8Array([0, 0, 0, 0, 2, 0xff, 0xff]) }),
      () => request({ headers: { "connect-timeout-ms": "soon" } }),
      () => request({ headers: { "connect-content-encoding": "zstd" } }),
    ];
    for (const make of bad) {
      const { theirs, ours, script } = await sideBySide(make);
      expect(ours).toEqual(theirs);
      expect(new TextDecoder().decode(new Uint8Array(ours.body))).toMatch(
        /"error":\{"code":"(invalid_argument|unimplemented|internal)"/,
      );
      expect(script.preEncoded).toEqual([]); // the implementation never ran
    }
  });

  it("leave JSON, compressed responses and other protocols to connect-es", async () => {
    const script = newScript();
    const { wrapped } = handlers(script, { acceptCompression: [compressionGzip] });
    const json = new TextEncoder().encode(JSON.stringify({ cpumask: "1" }));
    await call(
      wrapped,
      request({ headers: { "content-type": "application/connect+json" }, body: encodeEnvelope(0, json) }),
    );
    await call(wrapped, request({ headers: { "connect-accept-encoding": "gzip" } }));
    await call(wrapped, request({ headers: { "content-type": "application/grpc-web+proto" } }));
    expect(script.preEncoded).toEqual([false, false, false]);
    // Without gzip on the server, asking for it does not stop the pre-encoded path (the response is not compressed).
    const plain = newScript();
    await call(handlers(plain).wrapped, request({ headers: { "connect-accept-encoding": "gzip" } }));
    expect(plain.preEncoded).toEqual([true]);
  });

  it("when the client goes away: the call is aborted and the implementation closed, with no end-of-stream", async () => {
    const script = newScript();
    const { wrapped } = handlers(script);
    const res = await wrapped(request());
    const it = res.body![Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);
    await it.return?.();
    expect(script.closed).toBe(true);
    expect(script.signals[0]?.aborted).toBe(true);
  });
});
