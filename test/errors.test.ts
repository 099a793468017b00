/**
 * Typed errors end to end: the server attaches an ErrorDetail (reason +
 * values) to every domain error; the SDK turns it into the subclass for that
 * reason over Connect, gRPC-Web and gRPC alike, without losing the code.
 */
import { createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import {
  Code,
  ConnectError,
  createTaskwireClient,
  ErrorReason,
  InvalidCpumaskError,
  InvalidRequestError,
  LimitExceededError,
  ListenerNotFoundError,
  SeqOutOfRangeError,
  StreamTakenOverError,
  TaskNotFoundError,
  type TaskwireClient,
  TaskwireError,
  toTaskwireError,
} from "@taskwire/client";
import { connect as h2connect } from "node:http2";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTaskwireClient as createFetchClient } from "../clients/ts/src/mod.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { eventually, type Running, startServer } from "./helpers.ts";

let running: Running;
beforeAll(async () => {
  running = await startServer(createSimSource({ cpus: 8, exitRate: 200, seed: 3 }), { maxListeners: 3 });
});
afterAll(() => running.close());

async function failure(p: Promise<unknown> | (() => Promise<unknown>)): Promise<unknown> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (err) {
    return err;
  }
  throw new Error("expected the call to fail");
}

const drain = (client: TaskwireClient, req: Parameters<TaskwireClient["subscribeExits"]>[0]) => async () => {
  for await (const _ of client.subscribeExits(req)) { /* drain */ }
};

const transports: [string, () => TaskwireClient][] = [
  ["Connect (the SDK's default)", () => running.client],
  [
    "gRPC over h2c (a transport of your own)",
    () => createTaskwireClient(running.url, { transport: createGrpcTransport({ baseUrl: running.url }) }),
  ],
  [
    "gRPC-Web",
    () =>
      createTaskwireClient(running.url, {
        transport: createGrpcWebTransport({ baseUrl: running.url, httpVersion: "1.1" }),
      }),
  ],
];

describe.each(transports)("typed errors over %s", (_name, make) => {
  it("each failure is its reason's class, still a ConnectError with the right code", async () => {
    const client = make();
    const task = await failure(client.getPid({ pid: 4_000_000 }));
    expect(task).toBeInstanceOf(TaskNotFoundError);
    expect(task).toBeInstanceOf(ConnectError);
    expect(task).toMatchObject({
      code: Code.NotFound,
      reason: ErrorReason.TASK_NOT_FOUND,
      pid: 4_000_000,
      tgid: undefined,
    });
    // The sim says whose tasks it has: a pid from this machine is the likely mistake.
    expect((task as ConnectError).rawMessage).toBe(
      "no live task with pid 4000000 in the simulated kernel, whose tasks are its own, not this machine's",
    );
    expect(await failure(client.getTgid({ tgid: 4_000_001 }))).toMatchObject({
      tgid: 4_000_001,
      reason: ErrorReason.TASK_NOT_FOUND,
    });

    const mask = await failure(client.register({ cpumask: "0-99" }));
    expect(mask).toBeInstanceOf(InvalidCpumaskError);
    // CPU 99 is past the last of the 8 (nr_cpu_ids): bitmap_parselist()'s ERANGE, as the kernel answers it.
    expect(mask).toMatchObject({ code: Code.InvalidArgument, values: { errno: "ERANGE" } });
    expect(await failure(client.register({ cpumask: "0-3:1/0" }))).toMatchObject({ values: { errno: "EINVAL" } });
    expect(await failure(client.getPid({ pid: 0 }))).toBeInstanceOf(InvalidRequestError);

    const listener = await failure(client.deregister({ listenerId: "gone", cpumask: "1" }));
    expect(listener).toBeInstanceOf(ListenerNotFoundError);
    expect(listener).not.toBeInstanceOf(TaskNotFoundError);
    expect(listener).toMatchObject({ code: Code.NotFound, listenerId: "gone" });
  });

  it("stream failures are typed too: unknown listener, resume past the end, takeover", async () => {
    const client = make();
    expect(await failure(drain(client, { listenerId: "missing" }))).toBeInstanceOf(ListenerNotFoundError);
    const reg = await client.register({ cpumask: "0-7" });
    try {
      const past = await failure(drain(client, { listenerId: reg.listenerId, afterSeq: 1_000_000n }));
      expect(past).toBeInstanceOf(SeqOutOfRangeError);
      expect(past).toMatchObject({ code: Code.OutOfRange });
      const first = failure(drain(client, { listenerId: reg.listenerId }));
      await eventually(async () =>
        (await client.getInfo({ listeners: true })).listenerDetails.some((l) => l.streaming)
      );
      const ctl = new AbortController();
      const second = client.subscribeExits({ listenerId: reg.listenerId }, { signal: ctl.signal })
        [Symbol.asyncIterator]();
      await second.next();
      const taken = await first;
      expect(taken).toBeInstanceOf(StreamTakenOverError);
      expect(taken).toMatchObject({ code: Code.Aborted, reason: ErrorReason.STREAM_TAKEN_OVER });
      ctl.abort();
    } finally {
      await client.deregister({ listenerId: reg.listenerId, cpumask: "all" }).catch(() => {});
    }
  });
});

describe("typed errors: the edges", () => {
  it("RESOURCE_EXHAUSTED past the listener limit is LimitExceededError", async () => {
    const ids = [];
    try {
      let err: unknown;
      for (let i = 0; i < 4 && err === undefined; i++) {
        try {
          ids.push((await running.client.register({ cpumask: "0" })).listenerId);
        } catch (e) {
          err = e;
        }
      }
      expect(err).toBeInstanceOf(LimitExceededError);
      expect(err).toMatchObject({ code: Code.ResourceExhausted });
    } finally {
      for (const listenerId of ids) await running.client.deregister({ listenerId, cpumask: "all" });
    }
  });

  it("a ConnectError without taskwire's detail stays as it is, and is no typed error", () => {
    const plain = new ConnectError("connection refused", Code.Unavailable);
    expect(toTaskwireError(plain)).toBe(plain);
    expect(plain).not.toBeInstanceOf(TaskwireError);
    expect(plain).not.toBeInstanceOf(TaskNotFoundError);
    const other = new Error("x");
    expect(toTaskwireError(other)).toBe(other);
  });
});

describe.each(transports)("errors echo at most a bounded part of a request over %s", (_name, make) => {
  const HUGE_ID = "x".repeat(30_000);

  it("a 30 KB listener id is NOT_FOUND with an ErrorDetail, message and metadata clipped (unary and stream)", async () => {
    const client = make();
    for (
      const call of [
        () => client.deregister({ listenerId: HUGE_ID, cpumask: "1" }),
        drain(client, { listenerId: HUGE_ID }),
      ]
    ) {
      const err = await failure(call);
      expect(err).toBeInstanceOf(ListenerNotFoundError);
      expect(err).toMatchObject({ code: Code.NotFound, reason: ErrorReason.LISTENER_NOT_FOUND });
      const { rawMessage, listenerId } = err as ListenerNotFoundError;
      expect(rawMessage).toMatch(/^no listener "x{64}…" \(30000 characters\): it was never registered/);
      expect(listenerId).toBe(`${"x".repeat(128)}… (30000 characters)`);
    }
  });

  it("so are unknown field names and long cpumasks", async () => {
    const client = make();
    const fields = await failure(drain(client, { cpumask: "0", fields: ["y".repeat(20_000), "z"] }));
    expect(fields).toBeInstanceOf(InvalidRequestError);
    expect((fields as ConnectError).rawMessage).toMatch(
      /^unknown TaskStats field\(s\) "y{64}…" \(20000 characters\), "z" in fields/,
    );
    const mask = await failure(client.register({ cpumask: `${"0,".repeat(70)}x` })); // 141 bytes: within 100 + 6 x 8
    expect(mask).toBeInstanceOf(InvalidCpumaskError);
    expect((mask as ConnectError).rawMessage).toMatch(/^cpulist "(0,){32}…" \(141 characters\): expected a CPU number/);
  });
});

describe("a request that does not decode gets an ErrorDetail too (INVALID_REQUEST, typed by the SDK)", () => {
  const JUNK = new Uint8Array([0x0a, 0xff, 0xff]); // field 1, length-delimited, of 32767 bytes that never come
  const enveloped = (data: Uint8Array) => new Uint8Array([0, 0, 0, 0, data.byteLength, ...data]);

  // The SDK's fetch client, whose request bodies are replaced on the way out.
  const corrupting = (protocol: "connect" | "grpc-web", body: Uint8Array) =>
    createFetchClient(running.url, {
      protocol,
      fetch: (input, init) => fetch(input, { ...init, body: body as Uint8Array<ArrayBuffer> }),
    });

  it.each([
    ["Connect, protobuf", () => corrupting("connect", JUNK).register({ cpumask: "0" })],
    [
      "Connect, JSON",
      () =>
        createFetchClient(running.url, {
          useBinaryFormat: false,
          fetch: (i, init) => fetch(i, { ...init, body: "{oops" }),
        }).register({ cpumask: "0" }),
    ],
    ["Connect streaming", () => drain(corrupting("connect", enveloped(JUNK)), { cpumask: "0" })()],
    ["gRPC-Web", () => corrupting("grpc-web", enveloped(JUNK)).register({ cpumask: "0" })],
    ["gRPC-Web streaming", () => drain(corrupting("grpc-web", enveloped(JUNK)), { cpumask: "0" })()],
  ])("%s: InvalidRequestError, INVALID_ARGUMENT", async (_name, call) => {
    const before = running.server.stats().listeners;
    const err = await failure(call);
    expect(err).toBeInstanceOf(InvalidRequestError);
    expect(err).toMatchObject({ code: Code.InvalidArgument, reason: ErrorReason.INVALID_REQUEST });
    expect(running.server.stats().listeners).toBe(before);
  });

  it.each(["Register", "SubscribeExits"])("gRPC %s: the trailers carry it", async (method) => {
    const session = h2connect(running.url);
    try {
      const trailers = await new Promise<Headers>((resolve, reject) => {
        const req = session.request({
          ":method": "POST",
          ":path": `/taskwire.v1.TaskStats/${method}`,
          "content-type": "application/grpc",
          te: "trailers",
        });
        req.on(
          "trailers",
          (t) => resolve(new Headers(Object.entries(t).map(([k, v]): [string, string] => [k, String(v)]))),
        );
        req.on("data", () => {});
        req.on("error", reject);
        req.end(enveloped(JUNK));
      });
      const err = toTaskwireError(findTrailerError(trailers));
      expect(err).toBeInstanceOf(InvalidRequestError);
      expect(err).toMatchObject({ code: Code.InvalidArgument });
    } finally {
      session.close();
    }
  });
});

describe("errors that are not the server's", () => {
  it("a client that leaves mid-request is CANCELED, not an internal error, and is not logged", async () => {
    const { toConnectError } = await import("../src/rpc/errors.ts");
    const { configureLogging } = await import("../src/log/logger.ts");
    const logged: string[] = [];
    configureLogging({ write: (line) => void logged.push(line) });
    try {
      const left = new DOMException("The operation was aborted", "AbortError");
      expect(toConnectError(left).code).toBe(Code.Canceled);
      expect(toConnectError(new Error("bug")).code).toBe(Code.Internal);
    } finally {
      configureLogging({ sink: () => {} });
    }
    expect(logged).toEqual([expect.stringMatching(/^taskwire: error: unexpected error in a handler error=bug /)]); // the bug only
  });
});

describe("createTaskwireClient's baseUrl", () => {
  it("says how to write a URL without its scheme, or with another one", () => {
    expect(() => createFetchClient("localhost:7878")).toThrow(
      'baseUrl "localhost:7878" is not an http:// or https:// URL (its scheme is localhost:); write it whole, e.g. "http://localhost:7878"',
    );
    expect(() => createTaskwireClient("ftp://host.example:7878")).toThrow(/e\.g\. "http:\/\/host\.example:7878"/);
    expect(() => createTaskwireClient("127.0.0.1:7878")).toThrow(
      /is not a URL; pass e\.g\. "http:\/\/127\.0\.0\.1:7878"/,
    );
  });
});
