/**
 * Typed errors end to end: the server attaches an ErrorDetail (reason +
 * values) to every domain error; the SDK turns it into the subclass for that
 * reason over Connect, gRPC-Web and gRPC alike, without losing the code.
 */
import type { Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import {
  Code,
  ConnectError,
  createTaskwireClient,
  ErrorDetailSchema,
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

describe("a call's own deadline (timeoutMs)", () => {
  // A server that never answers: the call waits until its deadline aborts it.
  const held: Interceptor = () => (req) =>
    new Promise((_, reject) => {
      const fail = () => reject(req.signal.reason);
      if (req.signal.aborted) fail();
      else req.signal.addEventListener("abort", fail, { once: true });
    });

  function expectDeadline(err: unknown, rawMessage: string): void {
    expect(err).toBeInstanceOf(ConnectError);
    expect(err).not.toBeInstanceOf(TaskwireError); // no server's refusal, as a transport failure is none
    const e = err as ConnectError;
    expect(e.code).toBe(Code.DeadlineExceeded); // what watchExits retries, and code that checks codes looks for
    expect(e.rawMessage).toBe(rawMessage);
    expect(e.message).toBe(`[deadline_exceeded] ${rawMessage}`);
    expect(e.cause).toBeInstanceOf(ConnectError);
    expect((e.cause as ConnectError).rawMessage).toBe("the operation timed out"); // connect-es's own, kept
  }

  it("a unary call's says it passed, with the timeoutMs, and what to do, over each transport", async () => {
    const clients: [string, TaskwireClient][] = [
      ["Connect (the SDK's default)", createTaskwireClient(running.url, { interceptors: [held] })],
      [
        "gRPC (a transport of your own)",
        createTaskwireClient(running.url, {
          transport: createGrpcTransport({ baseUrl: running.url, interceptors: [held] }),
        }),
      ],
      ["fetch (browsers, Deno, Bun)", createFetchClient(running.url, { interceptors: [held] })],
    ];
    for (const [name, client] of clients) {
      const t0 = Date.now();
      const err = await failure(client.getInfo({}, { timeoutMs: 150 }));
      expect(Date.now() - t0, name).toBeGreaterThanOrEqual(140);
      expectDeadline(err, "the call's deadline (timeoutMs 150) passed: pass a longer timeoutMs, or none");
    }
  });

  it("after a retry it names the timeoutMs the caller gave, not the attempt's share of it", async () => {
    let attempts = 0;
    // The first attempt refused for the moment (retry after 10 ms), the second held past the deadline.
    const refusedThenHeld: Interceptor = (next) => (req) => {
      if (attempts++ > 0) return held(next)(req);
      const detail = { reason: ErrorReason.LIMIT_EXCEEDED, metadata: { retry_after_ms: "10" } };
      return Promise.reject(
        new ConnectError("refused for the moment", Code.ResourceExhausted, undefined, [
          { desc: ErrorDetailSchema, value: detail },
        ]),
      );
    };
    const client = createTaskwireClient(running.url, { interceptors: [refusedThenHeld] });
    const err = await failure(client.getInfo({}, { timeoutMs: 300 }));
    expect(attempts).toBe(2);
    expectDeadline(err, "the call's deadline (timeoutMs 300) passed: pass a longer timeoutMs, or none");
  });

  it("a stream's says a stream's timeoutMs bounds all of it, decoded by the SDK's decoder or protobuf-es", async () => {
    const clients = [running.client, createTaskwireClient(running.url, { useBinaryFormat: false })];
    for (const client of clients) {
      let events = 0;
      const err = await failure(async () => {
        for await (const _ of client.subscribeExits({ cpumask: "0-7" }, { timeoutMs: 400 })) events++;
      });
      expect(events).toBeGreaterThan(0); // it streamed, then its deadline passed
      expectDeadline(
        err,
        "the stream's deadline (timeoutMs 400) passed: a stream's timeoutMs bounds all of it; pass a longer timeoutMs, or none",
      );
    }
  });

  it("a given transport's defaultTimeoutMs says it set the deadline, and what to do, for a call and a stream", async () => {
    const given = (defaultTimeoutMs: number, interceptors: Interceptor[] = []) =>
      createTaskwireClient(running.url, {
        transport: createGrpcTransport({ baseUrl: running.url, defaultTimeoutMs, interceptors }),
      });
    const t0 = Date.now();
    const unary = await failure(given(150, [held]).getInfo({}));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expectDeadline(
      unary,
      "the call's deadline (the transport's defaultTimeoutMs: the call passed no timeoutMs) passed: pass a timeoutMs " +
        "of the call's own (0 for none), or create the transport with a longer defaultTimeoutMs",
    );
    let events = 0;
    const stream = await failure(async () => {
      for await (const _ of given(400).subscribeExits({ cpumask: "0-7" })) events++;
    });
    expect(events).toBeGreaterThan(0); // it streamed, then the transport's deadline passed
    expectDeadline(
      stream,
      "the stream's deadline (the transport's defaultTimeoutMs: the stream passed no timeoutMs) passed: a stream's " +
        "deadline bounds all of it; pass a timeoutMs of the stream's own (0 for none), or create the transport with " +
        "a longer defaultTimeoutMs",
    );
    // A call's own timeoutMs is the deadline that passed, and is named as before.
    expectDeadline(
      await failure(given(60_000, [held]).getInfo({}, { timeoutMs: 150 })),
      "the call's deadline (timeoutMs 150) passed: pass a longer timeoutMs, or none",
    );
  });

  it("leaves other errors as they were: a proxy's own deadline, a server's typed one, a call without timeoutMs", async () => {
    const failing = (err: ConnectError) =>
      createTaskwireClient(running.url, { interceptors: [() => () => Promise.reject(err)] });
    // A proxy's timeout is not the caller's timeoutMs passing.
    const proxy = await failure(
      failing(new ConnectError("upstream request timeout", Code.DeadlineExceeded)).getInfo({}, { timeoutMs: 5000 }),
    );
    expect((proxy as ConnectError).rawMessage).toBe("upstream request timeout");
    // A server's error with taskwire's detail is typed, and its message is the server's.
    const detail = { desc: ErrorDetailSchema, value: { reason: ErrorReason.UNSPECIFIED, metadata: {} } };
    const typed = await failure(
      failing(new ConnectError("the operation timed out", Code.DeadlineExceeded, undefined, [detail])).getInfo({}, {
        timeoutMs: 5000,
      }),
    );
    expect(typed).toBeInstanceOf(TaskwireError);
    expect((typed as TaskwireError).rawMessage).toBe("the operation timed out");
    // Without a timeoutMs of the caller's there is none to name.
    const bare = await failure(failing(new ConnectError("the operation timed out", Code.DeadlineExceeded)).getInfo({}));
    expect((bare as ConnectError).rawMessage).toBe("the operation timed out");
  });
});

describe("createTaskwireClient's baseUrl", () => {
  it("says how to write a URL without its scheme, or with another one", () => {
    expect(() => createFetchClient("localhost:7878")).toThrow(
      'baseUrl "localhost:7878" is not an http:// or https:// URL (its scheme is localhost:); write it whole, e.g. "http://localhost:7878"',
    );
    expect(() => createTaskwireClient("ftp://host.example:7878")).toThrow(/e\.g\. "http:\/\/host\.example:7878"/);
    // A password in it is not repeated.
    for (const url of ["ftp://ops:s3cret@host.example:7878", "ops:s3cret@host.example:7878"]) {
      expect(() => createTaskwireClient(url)).toThrow(/"(ftp:\/\/)?\*\*\*@host\.example:7878" is not an http/);
      expect(() => createTaskwireClient(url)).not.toThrow(/s3cret/);
    }
    expect(() => createTaskwireClient("127.0.0.1:7878")).toThrow(
      /is not a URL; pass e\.g\. "http:\/\/127\.0\.0\.1:7878"/,
    );
  });
});

describe("createTaskwireClient's tls", () => {
  it("refuses a file's path where PEM text goes, before any connection, without echoing the value", () => {
    const https = "https://127.0.0.1:7878";
    for (const name of ["ca", "cert", "key"] as const) {
      expect(() => createTaskwireClient(https, { tls: { [name]: "/etc/taskwire/tls/file.pem" } })).toThrow(
        new RegExp(`^tls\\.${name} holds no PEM text .*: pass the file's contents, not its path`),
      );
    }
    // A key's text without its header line is a secret: the message gives only its length.
    expect(() => createTaskwireClient(https, { tls: { key: "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49" } })).toThrow(
      /got a string of 32 characters/,
    );
    expect(() => createTaskwireClient(https, { tls: { key: "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49" } })).not.toThrow(
      /MIGH/,
    );
    const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    expect(() => createTaskwireClient(https, { tls: { ca: pem } })).not.toThrow();
    expect(() => createFetchClient(https, { tls: { ca: "ca.pem" } })).toThrow(/tls\.ca holds no PEM text/);
  });

  it("takes PEM as Node does: a Buffer, an array, after a BOM or blank lines; other keys are Node's to judge", () => {
    const https = "https://127.0.0.1:7878";
    const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    for (const ca of [Buffer.from(pem), [pem, Buffer.from(pem)], `\uFEFF\n\n  ${pem}`, Buffer.from(`\uFEFF${pem}`)]) {
      expect(() => createTaskwireClient(https, { tls: { ca } })).not.toThrow();
    }
    const extra = { ca: pem, rejectUnauthorized: true } as unknown as { ca: string };
    expect(() => createTaskwireClient(https, { tls: extra })).not.toThrow();
    // A DER file's bytes: Node trusts nothing from them (a self-signed error at the call), so they are refused too.
    const der = Buffer.from([0x30, 0x82, 0x01, 0x0a, 0x02, 0x82, 0x01, 0x01]);
    expect(() => createTaskwireClient(https, { tls: { ca: der } })).toThrow(
      /^tls\.ca holds no PEM text .*got 8 bytes \(DER\?\): convert a DER file to PEM first \(openssl x509 -inform der/,
    );
    expect(() => createTaskwireClient(https, { tls: { ca: [pem, "/etc/ca.pem"] } })).toThrow(
      /got an array whose element 1 is a string of 11 characters: pass the file's contents/,
    );
  });
});
