/**
 * How a stream ends, on every protocol, and what watchExits makes of it: a
 * server shutting down ends each stream with UNAVAILABLE (SHUTTING_DOWN),
 * delivered before the connection goes; a listener deregistered while it is
 * streamed ends its stream with NOT_FOUND (LISTENER_NOT_FOUND) once its
 * queued events are sent, and watchExits throws ListenerNotFoundError
 * instead of returning or registering the listener again.
 */
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import {
  Code,
  createTaskwireClient,
  ErrorReason,
  type ExitEvent,
  ListenerNotFoundError,
  ShuttingDownError,
  type TaskwireClient,
  watchExits,
} from "@taskwire/client";
import { connect as h2connect } from "node:http2";
import { afterEach, describe, expect, it } from "vitest";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { eventually, type Running, startServer } from "./helpers.ts";

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(): Promise<Running & { source: SimSource }> {
  const source = createSimSource({ cpus: 4, exitRate: 0, seed: 9 }) as SimSource;
  const running = await startServer(source);
  cleanups.push(() => running.close());
  return { ...running, source };
}

const protocols: [string, (url: string) => TaskwireClient][] = [
  ["Connect over HTTP/1.1 (the SDK's default)", (url) => createTaskwireClient(url)],
  [
    "Connect over h2c",
    (url) => createTaskwireClient(url, { transport: createConnectTransport({ baseUrl: url, httpVersion: "2" }) }),
  ],
  ["gRPC-Web", (url) => createTaskwireClient(url, { protocol: "grpc-web" })],
  ["gRPC over h2c", (url) => createTaskwireClient(url, { transport: createGrpcTransport({ baseUrl: url }) })],
  [
    "gRPC-Web over h2c",
    (url) => createTaskwireClient(url, { transport: createGrpcWebTransport({ baseUrl: url, httpVersion: "2" }) }),
  ],
];

/** Reads a stream to its end; resolves with its events and the error it ended with. */
async function readToEnd(
  stream: AsyncIterable<{ events: ExitEvent[] }>,
): Promise<{ events: ExitEvent[]; error: unknown }> {
  const events: ExitEvent[] = [];
  try {
    for await (const m of stream) events.push(...m.events);
  } catch (error) {
    return { events, error };
  }
  return { events, error: undefined };
}

describe.each(protocols)("over %s", (_name, make) => {
  it("a server shutting down ends a stream with UNAVAILABLE, SHUTTING_DOWN (not a dropped connection)", async () => {
    const { url, server, listening } = await start();
    const ended = readToEnd(make(url).subscribeExits({ cpumask: "0-3" }));
    await eventually(() => server.stats().streams === 1);
    const t0 = Date.now();
    await listening.close();
    const { error } = await ended;
    expect(error).toBeInstanceOf(ShuttingDownError);
    expect(error).toMatchObject({ code: Code.Unavailable, reason: ErrorReason.SHUTTING_DOWN });
    expect(Date.now() - t0).toBeLessThan(1900); // the stream finished: close() did not wait out its 2 s grace
  });

  it("leaving its for-await early (break) ends the stream on the server, and its ephemeral listener", async () => {
    const { url, server } = await start();
    // With a signal of the caller's own too: the SDK joins it with the one it aborts as the iteration ends.
    for (const options of [{}, { signal: new AbortController().signal }]) {
      for await (const opening of make(url).subscribeExits({ cpumask: "0-3" }, options)) {
        expect(opening.listenerId).not.toBe("");
        break; // connect-es alone left the request open (only a signal ends it), the listener with it
      }
      await eventually(() => server.stats().streams === 0 && server.stats().listeners === 0, 3000);
    }
  });

  it("a listener deregistered while streamed: its queued events, then NOT_FOUND naming why", async () => {
    const { url, client, server, source } = await start();
    const { listenerId } = await client.register({ cpumask: "0-3", buffer: 1000 });
    const ended = readToEnd(make(url).subscribeExits({ listenerId, maxBatch: 16 }));
    await eventually(() => server.stats().streams === 1);
    source.kernel.exitNow(300);
    await client.deregister({ listenerId, cpumask: "all" }); // by its owner, from elsewhere
    const { events, error } = await ended;
    expect(events.map((e) => Number(e.seq))).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(error).toBeInstanceOf(ListenerNotFoundError);
    expect(error).toMatchObject({ code: Code.NotFound, listenerId, removed: "the listener has no CPUs left" });
  });
});

describe("watchExits when its listener is deregistered by someone else", () => {
  it("on an explicit listenerId: the events queued, then ListenerNotFoundError (resuming or not)", async () => {
    for (const resume of [true, false]) {
      const { client, server, source } = await start();
      const { listenerId } = await client.register({ cpumask: "0-3", buffer: 1000 });
      const seen: ExitEvent[] = [];
      const reconnects: unknown[] = [];
      const run = (async () => {
        for await (const ev of watchExits(client, { listenerId, resume, onReconnect: (r) => reconnects.push(r) })) {
          seen.push(ev);
        }
      })();
      run.catch(() => {}); // checked below: the stream's end may come before Deregister's answer
      await eventually(() => server.stats().streams === 1);
      source.kernel.exitNow(100);
      await client.deregister({ listenerId, cpumask: "all" });
      await expect(run).rejects.toBeInstanceOf(ListenerNotFoundError);
      await expect(run).rejects.toMatchObject({ removed: "the listener has no CPUs left" });
      expect(seen).toHaveLength(100);
      expect(reconnects).toEqual([]);
    }
  });

  it("its signal ends it quietly, resuming or not (one stream alone threw CANCELED), and the stream on the server", async () => {
    const { client, server } = await start();
    for (const resume of [true, false]) {
      const ctl = new AbortController();
      const seen: ExitEvent[] = [];
      const run = (async () => {
        for await (const ev of watchExits(client, { cpumask: "0-3", resume, signal: ctl.signal })) seen.push(ev);
      })();
      await eventually(() => server.stats().streams === 1);
      ctl.abort();
      await expect(run, `resume: ${resume}`).resolves.toBeUndefined();
      await eventually(() => server.stats().streams === 0);
    }
  });

  it("on a cpumask: ListenerNotFoundError, not registered again (that would undo the deregistration)", async () => {
    const { client, server, source } = await start();
    let own = "";
    const seen: ExitEvent[] = [];
    const run = (async () => {
      const onSubscribed = ({ listenerId }: { listenerId: string }) => (own = listenerId);
      for await (const ev of watchExits(client, { cpumask: "0-3", onSubscribed })) seen.push(ev);
    })();
    run.catch(() => {}); // checked below: the stream's end may come before Deregister's answer
    await eventually(() => own !== "" && server.stats().streams === 1);
    expect(server.listeners().map((l) => l.ephemeral)).toEqual([false]); // watchExits registered it
    source.kernel.exitNow(50);
    await client.deregister({ listenerId: own, cpumask: "all" });
    await expect(run).rejects.toBeInstanceOf(ListenerNotFoundError);
    expect(seen).toHaveLength(50);
    expect(seen.every((e) => e.event.case === "exit")).toBe(true); // no RESTART loss: it did not start over
    expect(server.stats().listeners).toBe(0);
  });

  it("a stream the server ends without an error (an older server) is ListenerNotFoundError too, never a silent end", async () => {
    const { client } = await start();
    const { listenerId } = await client.register({ cpumask: "0" });
    // A client whose stream ends at once, as an older server's did for a removed listener.
    const ending: TaskwireClient = {
      ...client,
      subscribeExits: async function* () {
        yield {
          $typeName: "taskwire.v1.SubscribeExitsResponse",
          events: [],
          listenerId,
          cpumask: "0",
          queued: 0,
          heartbeat: false,
        };
      },
    } as TaskwireClient;
    for (const resume of [true, false]) {
      const run = (async () => {
        for await (const _ of watchExits(ending, { listenerId, resume })) { /* none */ }
      })();
      await expect(run).rejects.toBeInstanceOf(ListenerNotFoundError);
    }
  });
});

// The server's own answer to a request's timeout, asked without a client
// deadline (the SDK's transports would end the call themselves first).
describe("a stream past its request's timeout", () => {
  const request = new Uint8Array([0, 0, 0, 0, 5, 0x12, 3, 0x30, 0x2d, 0x33]); // SubscribeExitsRequest{cpumask: "0-3"}

  // A raw Connect streaming call: its messages, and its end-of-stream error (if any).
  async function connectCall(url: string, o: { json?: object; timeoutMs: string }) {
    const json = o.json === undefined ? undefined : new TextEncoder().encode(JSON.stringify(o.json));
    const res = await fetch(`${url}/taskwire.v1.TaskStats/SubscribeExits`, {
      method: "POST",
      headers: {
        "content-type": json ? "application/connect+json" : "application/connect+proto",
        "connect-timeout-ms": o.timeoutMs,
      },
      body: json ? new Uint8Array([0, 0, 0, 0, json.length, ...json]) : request,
    });
    const bytes = new Uint8Array(await res.arrayBuffer());
    const frames: { end: boolean; data: Uint8Array }[] = [];
    for (let p = 0; p + 5 <= bytes.length;) {
      const len = new DataView(bytes.buffer, bytes.byteOffset + p + 1).getUint32(0);
      frames.push({ end: (bytes[p]! & 2) !== 0, data: bytes.subarray(p + 5, p + 5 + len) });
      p += 5 + len;
    }
    const last = frames.at(-1);
    expect(last?.end).toBe(true);
    const end = JSON.parse(new TextDecoder().decode(last!.data)) as {
      error?: { code: string; message: string; details?: { type: string }[] };
    };
    return { messages: frames.length - 1, error: end.error };
  }

  function grpcCall(url: string, timeout: string): Promise<Record<string, unknown>> {
    const session = h2connect(url);
    cleanups.push(() => void session.close());
    const stream = session.request({
      ":method": "POST",
      ":path": "/taskwire.v1.TaskStats/SubscribeExits",
      "content-type": "application/grpc",
      te: "trailers",
      "grpc-timeout": timeout,
    });
    stream.end(request);
    stream.resume();
    // A call refused at once answers with its status in the headers (trailers-only).
    return new Promise((resolve) => {
      stream.once("trailers", resolve);
      stream.once("response", (h) => h["grpc-status"] !== undefined && resolve(h));
    });
  }

  it("ends with DEADLINE_EXCEEDED on Connect (binary and JSON), after its events", async () => {
    const { url } = await start();
    for (const json of [undefined, { cpumask: "0-3" }]) {
      const { messages, error } = await connectCall(url, { timeoutMs: "400", ...(json && { json }) });
      expect(messages).toBeGreaterThan(0); // the opening message (and heartbeats)
      expect(error?.code).toBe("deadline_exceeded");
      expect(error?.message).toBe("the call's deadline passed: send a longer timeout, or none");
      expect(error?.details?.map((d) => d.type)).toEqual(["taskwire.v1.ErrorDetail"]); // as every error has
    }
  });

  it("ends with grpc-status 4 (DEADLINE_EXCEEDED) on gRPC", async () => {
    const { url } = await start();
    const trailers = await grpcCall(url, "400m");
    expect(trailers["grpc-status"]).toBe(String(Code.DeadlineExceeded));
    expect(trailers["grpc-status-details-bin"]).toBeDefined(); // its ErrorDetail
  });

  it("a timeout of 0 is refused before it takes over the listener", async () => {
    const { url, client, server } = await start();
    const { listenerId } = await client.register({ cpumask: "0-3", buffer: 1000 });
    const healthy = readToEnd(client.subscribeExits({ listenerId }));
    await eventually(() => server.stats().streams === 1);
    const { messages, error } = await connectCall(url, { json: { listenerId }, timeoutMs: "0" });
    expect([messages, error?.code]).toEqual([0, "deadline_exceeded"]);
    await new Promise((r) => setTimeout(r, 200));
    expect(server.stats().streams).toBe(1); // the healthy stream still has its listener
    await client.deregister({ listenerId, cpumask: "all" });
    expect((await healthy).error).toBeInstanceOf(ListenerNotFoundError); // not taken over
  });

  it("a timeout past what Node's timers hold (2^31-1 ms) is INVALID_ARGUMENT naming the limit", async () => {
    const { url } = await start();
    const { messages, error } = await connectCall(url, { timeoutMs: "2592000000" }); // 30 days
    expect(messages).toBe(0);
    expect(error?.code).toBe("invalid_argument");
    expect(error?.message).toBe(
      "the request's timeout (2592000000 ms) is longer than this server can time (at most 2147483647 ms, " +
        "about 24.8 days): send a shorter timeout, or none",
    );
    expect((await grpcCall(url, "720H"))["grpc-status"]).toBe(String(Code.InvalidArgument));
  });

  it("refuses it without arming a timer for it: no TimeoutOverflowWarning, on every protocol, unary or stream", async () => {
    const { url } = await start();
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on("warning", onWarning);
    try {
      const unary = (headers: Record<string, string>) =>
        fetch(`${url}/taskwire.v1.TaskStats/GetInfo`, { method: "POST", headers, body: "{}" });
      const connect = await unary({ "content-type": "application/json", "connect-timeout-ms": "9999999999" });
      expect(connect.status).toBe(400);
      expect(((await connect.json()) as { message: string }).message).toMatch(
        /^the request's timeout \(9999999999 ms\) is longer than this server can time/,
      );
      const web = await fetch(`${url}/taskwire.v1.TaskStats/GetInfo`, {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto", "grpc-timeout": "99999999H" },
        body: new Uint8Array(5),
      });
      // gRPC-Web over HTTP/1.1: the status in the trailer frame.
      expect(new TextDecoder().decode(await web.arrayBuffer())).toMatch(/grpc-status: ?3\r\n/);
      expect((await grpcCall(url, "99999999H"))["grpc-status"]).toBe(String(Code.InvalidArgument));
      expect((await connectCall(url, { timeoutMs: "9999999999" })).error?.code).toBe("invalid_argument");
      await new Promise((r) => setTimeout(r, 50)); // warnings are emitted on the next tick
      expect(warnings).toEqual([]);
    } finally {
      process.off("warning", onWarning);
    }
  });
});
