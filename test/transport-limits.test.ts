/**
 * Transport limits: nothing a client sends at the connection or HTTP level
 * exhausts the server. Oversized request messages are refused from their
 * length before they are read (every protocol); silent, half-sent and idle
 * connections are closed after their timeout (plaintext and TLS); connections
 * past the cap and HTTP/2 streams past the per-connection cap are refused;
 * and a long, idle SubscribeExits stream outlives every one of these
 * timeouts. After each attack /healthz still answers on a new connection.
 */
import { execFile } from "node:child_process";
import { EventEmitter } from "node:events";
import { readdirSync, readlinkSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { Agent, request as h1request } from "node:http";
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect as h2connect,
  constants as h2,
  type IncomingHttpHeaders,
} from "node:http2";
import { connect as tcpConnect, type Socket } from "node:net";
import type { Writable } from "node:stream";
import { connect as tlsConnect } from "node:tls";
import { create } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { SubscribeExitsRequestSchema, TaskStats } from "../src/gen/taskwire/v1/taskstats_pb.ts";
import { DEFAULT_TRANSPORT_LIMITS, type Listening, listenNode, type ListenOptions } from "../src/runtime/node.ts";
import { configureLogging } from "../src/log/logger.ts";
import { connectionBudget, createConnectionCaps, descriptors } from "../src/runtime/_transport-limits.ts";
import { createServer } from "../src/server/server.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { loopbackCertificate, sleep } from "./helpers.ts";
import { h2Frame, hpackLiterals } from "../bench/_h2-frames.ts";

const MiB = 1024 * 1024;
const LIMITS = { headerTimeoutMs: 300, requestTimeoutMs: 600, idleTimeoutMs: 500, h2MaxStreams: 4 } as const;
// A timeout fires once Node's check runs after the deadline (HTTP/1.1 checks every headerTimeoutMs/4): allow
// for that and a loaded machine, but far less than "never".
const SLACK_MS = 1_500;
// Node keeps an idle HTTP/1.1 connection 1 s past keepAliveTimeout (the Keep-Alive header announces the timeout
// itself), so a client never sends on a connection the server is closing.
const KEEP_ALIVE_GRACE_MS = 1_000;

let plain: Listening;
let tls: Listening;
let ca: string;
let tlsKey: string;

function serve(options: ListenOptions = {}): Promise<Listening> {
  const source = createSimSource({ cpus: 8, exitRate: 0, seed: 7 });
  return listenNode(createServer({ source, limits: { heartbeatMs: 200 } }), { port: 0, ...LIMITS, ...options });
}

beforeAll(async () => {
  const made = loopbackCertificate();
  ca = made.cert;
  tlsKey = made.key;
  plain = await serve();
  tls = await serve({ tls: { cert: ca, key: made.key } });
});
afterAll(async () => {
  await plain?.close();
  await tls?.close();
});

/** GET /healthz on a new HTTP/1.1 connection. */
function healthz(url: string, agent: Agent | false = false): Promise<number> {
  return get(`${url}/healthz`, agent).then((r) => r.status);
}

function get(url: string, agent: Agent | false = false): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = h1request(url, { agent }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
      res.once("end", () => resolve({ status: res.statusCode!, body }));
    });
    req.once("error", reject);
    req.end();
  });
}

async function expectHealthy(): Promise<void> {
  expect(await healthz(plain.url)).toBe(200);
}

/**
 * Writes `total` bytes of `fill` into `w` as fast as it takes them, never
 * holding more than one chunk: a 300 MB body is not built in memory. Stops
 * when told (the server answered).
 */
function pump(w: Writable, total: number, fill = 0x20): { sent(): number; stop(): void } {
  const chunk = Buffer.alloc(256 * 1024, fill);
  let sent = 0;
  let stopped = false;
  const step = (): void => {
    while (!stopped && !w.destroyed && sent < total) {
      const n = Math.min(chunk.length, total - sent);
      sent += n;
      if (!w.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
        w.once("drain", step);
        return;
      }
    }
    if (sent >= total && !w.destroyed) w.end();
  };
  w.on("error", () => {});
  step();
  return { sent: () => sent, stop: () => (stopped = true) };
}

/** A 5-byte envelope prefix announcing a message of `length` bytes. */
function envelopePrefix(length: number): Buffer {
  const b = Buffer.alloc(5);
  b.writeUInt32BE(length, 1);
  return b;
}

interface Answer {
  status: number;
  headers: Record<string, unknown>;
  body: Buffer;
  trailers: Record<string, unknown>;
  /** Request bytes written before the answer was complete. */
  sent: number;
}

/** POSTs a `total`-byte body over HTTP/1.1 (chunked unless `contentLength`), streamed lazily. */
function postH1(
  url: string,
  path: string,
  headers: Record<string, string>,
  head: Buffer,
  total: number,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = h1request(`${url}${path}`, { method: "POST", headers, agent: false }, (res) => {
      const body: Buffer[] = [];
      res.on("data", (d: Buffer) => body.push(d));
      res.once("end", () => {
        p.stop();
        resolve({
          status: res.statusCode!,
          headers: res.headers,
          body: Buffer.concat(body),
          trailers: res.trailers,
          sent: p.sent(),
        });
        req.destroy();
      });
    });
    req.once("error", reject);
    req.write(head);
    const p = pump(req, total - head.length);
  });
}

/** POSTs a `total`-byte body on a new h2c session, streamed lazily. */
function postH2(
  url: string,
  path: string,
  headers: Record<string, string>,
  head: Buffer,
  total: number,
): Promise<Answer> {
  const session = h2connect(url);
  session.on("error", () => {});
  return new Promise<Answer>((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": path, ...headers });
    let status = 0;
    let responseHeaders: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    const body: Buffer[] = [];
    stream.once("response", (h) => {
      status = Number(h[":status"]);
      responseHeaders = h;
    });
    stream.once("trailers", (t) => (trailers = t));
    stream.on("data", (d: Buffer) => body.push(d));
    stream.once("end", () => {
      p.stop();
      resolve({ status, headers: responseHeaders, body: Buffer.concat(body), trailers, sent: p.sent() });
    });
    stream.once("error", reject);
    stream.write(head);
    const p = pump(stream, total - head.length);
  }).finally(() => session.destroy());
}

function rssMiB(): number {
  return process.memoryUsage().rss / MiB;
}

describe("request message size (--max-message-bytes, default 64 KiB)", () => {
  const NAMES_THE_FLAG = /65536 bytes per request message \(--max-message-bytes\)/;

  it("Connect JSON on HTTP/1.1: a 300 MB body with Content-Length is refused unread", async () => {
    const before = rssMiB();
    const total = 300 * 1000 * 1000;
    const head = Buffer.from('{"cpumask":"');
    const a = await postH1(
      plain.url,
      "/taskwire.v1.TaskStats/Register",
      {
        "content-type": "application/json",
        "content-length": String(total),
      },
      head,
      total,
    );
    expect(a.status).toBe(429); // Connect's HTTP status for resource_exhausted
    const err = JSON.parse(a.body.toString());
    expect(err.code).toBe("resource_exhausted");
    expect(err.message).toMatch(NAMES_THE_FLAG);
    expect(err.message).toContain("300000000 bytes");
    expect(a.sent).toBeLessThan(total / 4);
    expect(rssMiB() - before).toBeLessThan(100);
    await expectHealthy();
  });

  it("Connect JSON on HTTP/1.1, chunked: refused once past the limit, not after 300 MB", async () => {
    const before = rssMiB();
    const total = 300 * 1000 * 1000;
    const a = await postH1(
      plain.url,
      "/taskwire.v1.TaskStats/Register",
      {
        "content-type": "application/json",
      },
      Buffer.from('{"cpumask":"'),
      total,
    );
    expect(a.status).toBe(429);
    expect(JSON.parse(a.body.toString()).message).toMatch(NAMES_THE_FLAG);
    expect(a.sent).toBeLessThan(total / 4);
    expect(rssMiB() - before).toBeLessThan(100);
    await expectHealthy();
  });

  it("Connect binary streaming on h2c: an envelope announcing 300 MB is refused from its prefix", async () => {
    const before = rssMiB();
    const total = 300 * 1000 * 1000;
    const a = await postH2(
      plain.url,
      "/taskwire.v1.TaskStats/SubscribeExits",
      {
        "content-type": "application/connect+proto",
      },
      envelopePrefix(total - 5),
      total,
    );
    expect(a.status).toBe(200); // Connect streaming errors travel in the end-stream message
    const end = JSON.parse(a.body.subarray(5).toString());
    expect(a.body[0]! & 0b10).toBe(0b10);
    expect(end.error.code).toBe("resource_exhausted");
    expect(end.error.message).toMatch(NAMES_THE_FLAG);
    expect(a.sent).toBeLessThan(total / 4);
    expect(rssMiB() - before).toBeLessThan(100);
    await expectHealthy();
  });

  it("Connect binary unary on h2c with Content-Length: refused unread", async () => {
    const total = 300 * 1000 * 1000;
    const a = await postH2(
      plain.url,
      "/taskwire.v1.TaskStats/GetInfo",
      {
        "content-type": "application/proto",
        "content-length": String(total),
      },
      Buffer.alloc(0),
      total,
    );
    expect(a.status).toBe(429);
    expect(JSON.parse(a.body.toString()).message).toMatch(NAMES_THE_FLAG);
    expect(a.sent).toBeLessThan(total / 4);
    await expectHealthy();
  });

  it("gRPC on h2c: a 10 MiB message is refused with RESOURCE_EXHAUSTED before it is decoded", async () => {
    const total = 5 + 10 * MiB;
    const a = await postH2(
      plain.url,
      "/taskwire.v1.TaskStats/GetInfo",
      {
        "content-type": "application/grpc",
        te: "trailers",
      },
      envelopePrefix(10 * MiB),
      total,
    );
    const status = a.trailers["grpc-status"] ?? a.headers["grpc-status"];
    const message = decodeURIComponent(String(a.trailers["grpc-message"] ?? a.headers["grpc-message"]));
    expect(status).toBe(String(Code.ResourceExhausted));
    expect(message).toMatch(NAMES_THE_FLAG);
    expect(message).toContain(`${10 * MiB} bytes`);
    expect(a.sent).toBeLessThan(total / 2);
    await expectHealthy();
  });

  it("gRPC-Web on HTTP/1.1: an envelope announcing 300 MB is refused from its prefix", async () => {
    const before = rssMiB();
    const total = 300 * 1000 * 1000;
    const a = await postH1(
      plain.url,
      "/taskwire.v1.TaskStats/SubscribeExits",
      {
        "content-type": "application/grpc-web+proto",
      },
      envelopePrefix(total - 5),
      total,
    );
    const text = a.body.toString("latin1");
    const status = a.headers["grpc-status"] ?? /grpc-status: ?(\d+)/.exec(text)?.[1];
    expect(status).toBe(String(Code.ResourceExhausted));
    expect(decodeURIComponent(String(a.headers["grpc-message"] ?? /grpc-message: ?([^\r\n]*)/.exec(text)?.[1])))
      .toMatch(NAMES_THE_FLAG);
    expect(a.sent).toBeLessThan(total / 4);
    expect(rssMiB() - before).toBeLessThan(100);
    await expectHealthy();
  });

  it("a request within the limit is served as before", async () => {
    const client = createClient(TaskStats, createConnectTransport({ baseUrl: plain.url, httpVersion: "1.1" }));
    expect((await client.getInfo({})).source).toBe("sim");
    const grpc = createClient(TaskStats, createGrpcTransport({ baseUrl: plain.url }));
    expect((await grpc.getInfo({})).source).toBe("sim");
  });
});

/** Connects (plain TCP, or TLS if `secure`), writes `bytes` if any, and resolves with ms until the server closes. */
function closedAfter(
  url: string,
  bytes?: Buffer | string,
  secure?: { alpn: string },
): Promise<{ ms: number; got: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const started = Date.now();
    let got = "";
    const socket: Socket = secure
      ? tlsConnect({ host: u.hostname, port: Number(u.port), ca, ALPNProtocols: [secure.alpn] })
      : tcpConnect(Number(u.port), u.hostname);
    socket.once(secure ? "secureConnect" : "connect", () => {
      if (bytes !== undefined) socket.write(bytes);
    });
    socket.on("data", (d: Buffer) => (got += d.toString("latin1")));
    socket.once("close", () => resolve({ ms: Date.now() - started, got }));
    socket.once("error", () => {});
    setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server kept the connection open for ${Date.now() - started} ms`));
    }, 10_000).unref();
  });
}

const PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

describe("connection timeouts (--header-timeout-ms, --request-timeout-ms, --idle-timeout-ms)", () => {
  it("a silent plaintext socket is closed after the header timeout", async () => {
    const { ms } = await closedAfter(plain.url);
    expect(ms).toBeGreaterThanOrEqual(LIMITS.headerTimeoutMs - 20);
    expect(ms).toBeLessThan(LIMITS.headerTimeoutMs + SLACK_MS);
    await expectHealthy();
  });

  it("part of the h2c preface, then silence: closed after the header timeout", async () => {
    const { ms } = await closedAfter(plain.url, PREFACE.slice(0, 16));
    expect(ms).toBeGreaterThanOrEqual(LIMITS.headerTimeoutMs - 20);
    expect(ms).toBeLessThan(LIMITS.headerTimeoutMs + SLACK_MS);
    await expectHealthy();
  });

  it("partial HTTP/1.1 headers: 408 and closed after the header timeout", async () => {
    const { ms, got } = await closedAfter(plain.url, "POST /taskwire.v1.TaskStats/GetInfo HTTP/1.1\r\nHost: x\r\n");
    expect(got).toMatch(/^HTTP\/1\.1 408/);
    expect(ms).toBeGreaterThanOrEqual(LIMITS.headerTimeoutMs - 20);
    expect(ms).toBeLessThan(LIMITS.headerTimeoutMs + SLACK_MS);
    await expectHealthy();
  });

  it("an HTTP/1.1 body that stops short: 408 and closed after the request timeout", async () => {
    const { ms, got } = await closedAfter(
      plain.url,
      "POST /taskwire.v1.TaskStats/GetInfo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    );
    expect(got).toMatch(/^HTTP\/1\.1 408/);
    expect(ms).toBeGreaterThanOrEqual(LIMITS.requestTimeoutMs - 20);
    expect(ms).toBeLessThan(LIMITS.requestTimeoutMs + SLACK_MS);
    await expectHealthy();
  });

  it("an idle HTTP/1.1 keep-alive connection is closed after the idle timeout (and Node's 1 s grace)", async () => {
    const { ms, got } = await closedAfter(plain.url, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    expect(got).toMatch(/^HTTP\/1\.1 200/);
    expect(ms).toBeGreaterThanOrEqual(LIMITS.idleTimeoutMs - 20);
    expect(ms).toBeLessThan(LIMITS.idleTimeoutMs + KEEP_ALIVE_GRACE_MS + SLACK_MS);
  });

  it("a preface-only h2c connection (no stream) is closed after the idle timeout", async () => {
    const { ms, got } = await closedAfter(plain.url, PREFACE);
    // The server's SETTINGS, then GOAWAY (type 7) before the close.
    expect(got.length).toBeGreaterThan(0);
    expect(ms).toBeGreaterThanOrEqual(LIMITS.idleTimeoutMs - 20);
    expect(ms).toBeLessThan(LIMITS.idleTimeoutMs + SLACK_MS);
    await expectHealthy();
  });

  it("an h2c request that never ends is reset (CANCEL) after the request timeout; its session then idles out", async () => {
    const session = h2connect(plain.url);
    session.on("error", () => {});
    const started = Date.now();
    const stream = session.request(
      { ":method": "POST", ":path": "/taskwire.v1.TaskStats/GetInfo", "content-type": "application/proto" },
      { endStream: false },
    );
    stream.on("error", () => {});
    stream.resume();
    const rst = await new Promise<number>((resolve) => stream.once("close", () => resolve(stream.rstCode!)));
    const ms = Date.now() - started;
    expect(rst).toBe(h2.NGHTTP2_CANCEL);
    expect(ms).toBeGreaterThanOrEqual(LIMITS.requestTimeoutMs - 20);
    expect(ms).toBeLessThan(LIMITS.requestTimeoutMs + SLACK_MS);
    await new Promise<void>((resolve) => session.once("close", () => resolve()));
    expect(Date.now() - started).toBeLessThan(LIMITS.requestTimeoutMs + LIMITS.idleTimeoutMs + SLACK_MS);
    await expectHealthy();
  });

  it("TLS: a socket that never starts its handshake is closed after the header timeout", async () => {
    const { ms } = await closedAfter(tls.url);
    expect(ms).toBeGreaterThanOrEqual(LIMITS.headerTimeoutMs - 20);
    expect(ms).toBeLessThan(LIMITS.headerTimeoutMs + SLACK_MS);
    await expectHealthy();
  });

  it("TLS HTTP/1.1: partial headers get 408 and a close after the header timeout", async () => {
    const { ms, got } = await closedAfter(tls.url, "GET /healthz HTTP/1.1\r\nHost: x\r\n", { alpn: "http/1.1" });
    expect(got).toMatch(/^HTTP\/1\.1 408/);
    expect(ms).toBeLessThan(LIMITS.headerTimeoutMs + SLACK_MS);
    await expectHealthy();
  });

  it("TLS HTTP/1.1: an idle keep-alive connection is closed after the idle timeout", async () => {
    const { ms, got } = await closedAfter(tls.url, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", { alpn: "http/1.1" });
    expect(got).toMatch(/^HTTP\/1\.1 200/);
    expect(ms).toBeGreaterThanOrEqual(LIMITS.idleTimeoutMs - 20);
    expect(ms).toBeLessThan(LIMITS.idleTimeoutMs + KEEP_ALIVE_GRACE_MS + SLACK_MS);
  });

  it("TLS h2: a preface-only session is closed after the idle timeout", async () => {
    const { ms } = await closedAfter(tls.url, PREFACE, { alpn: "h2" });
    expect(ms).toBeGreaterThanOrEqual(LIMITS.idleTimeoutMs - 20);
    expect(ms).toBeLessThan(LIMITS.idleTimeoutMs + SLACK_MS);
    await expectHealthy();
  });
});

/** Opens a TCP connection and resolves once connected. */
function open(url: string): Promise<Socket> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = tcpConnect(Number(u.port), u.hostname, () => resolve(s));
    s.once("error", reject);
  });
}

// Enough of a socket for the connection caps: its address, and "close" to emit.
function fakeSocket(remoteAddress: string): Socket {
  return Object.assign(new EventEmitter(), { remoteAddress }) as never as Socket;
}

// Clients that connect over TLS with ALPN h2, send the preface and SETTINGS, and reset (or close), `threads` at a
// time: Node 20 lost some of these clients' leaving, and the sessions' sockets stayed open for good.
function h2ResetStorm(port: number, o: { threads: number; each: number; reset: boolean }): Promise<void> {
  const code = `
import socket, ssl, struct, threading, time
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["h2"])
hello = b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n" + b"\\x00\\x00\\x00\\x04\\x00\\x00\\x00\\x00\\x00"
def one():
    s = socket.create_connection(("127.0.0.1", ${port}))
    try:
        s = ctx.wrap_socket(s)
        s.sendall(hello)
        time.sleep(0.002)
        if ${o.reset ? "True" : "False"}: s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        s.close()
def each():
    for _ in range(${o.each}): one()
ts = [threading.Thread(target=each) for _ in range(${o.threads})]
[t.start() for t in ts]; [t.join() for t in ts]
`;
  return new Promise((resolve, reject) => {
    execFile(
      "python3",
      ["-c", code],
      (err, _out, stderr) => (err ? reject(new Error(stderr || String(err))) : resolve()),
    );
  });
}

// This process's open sockets.
function openSockets(): number {
  return readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith("socket:");
    } catch {
      return false; // closed since the listing
    }
  }).length;
}

describe("connection and stream caps", () => {
  it("HTTP/2 over TLS: sessions whose clients leave, a few at a time, all give their sockets back", async () => {
    const server = await serve({ tls: { cert: ca, key: tlsKey } });
    try {
      const before = openSockets();
      await h2ResetStorm(server.port, { threads: 8, each: 30, reset: true });
      await h2ResetStorm(server.port, { threads: 8, each: 30, reset: false });
      // Within the idle timeout (500 ms) and the grace to finish closing (2 s), every socket is gone; before,
      // 30-90 of the 480 stayed open for good.
      const deadline = Date.now() + 10_000;
      while (openSockets() > before && Date.now() < deadline) await sleep(200);
      expect(openSockets()).toBeLessThanOrEqual(before);
    } finally {
      await server.close();
    }
  });

  it("connections past --max-connections are closed at once; one within the cap still gets /healthz", async () => {
    const cap = 12;
    // Long timeouts: the held connections must stay open for the whole test.
    const server = await serve({
      maxConnections: cap,
      headerTimeoutMs: 20_000,
      requestTimeoutMs: 20_000,
      idleTimeoutMs: 20_000,
    });
    const held: Socket[] = [];
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < cap - 1; i++) held.push(await open(server.url));
      expect(await healthz(server.url, agent)).toBe(200); // the cap-th connection, kept alive
      await sleep(50);
      const extra = await Promise.all(Array.from({ length: 20 }, async () => {
        const s = await open(server.url).catch(() => undefined);
        if (s === undefined) return 0;
        const started = Date.now();
        await new Promise((r) => s.once("close", r));
        return Date.now() - started;
      }));
      expect(Math.max(...extra)).toBeLessThan(1_000);
      // Counted for /metrics, by the cap that refused them.
      const metrics = (await get(`${server.url}/metrics`, agent)).body; // on the kept-alive connection
      expect(metrics).toMatch(/^taskwire_connections_refused_total\{limit="max_connections"\} 20$/m);
      expect(metrics).toMatch(/^taskwire_connections_refused_total\{limit="max_connections_per_address"\} 0$/m);
      // The held ones are still open, and the kept-alive one is still served.
      expect(held.every((s) => !s.destroyed)).toBe(true);
      expect(await healthz(server.url, agent)).toBe(200);
      for (const s of held) s.destroy();
      await sleep(100);
      expect(await healthz(server.url)).toBe(200);
    } finally {
      agent.destroy();
      for (const s of held) s.destroy();
      await server.close();
    }
  });

  // The cap counts remote addresses only: this test needs an address of this machine's besides loopback.
  const external = Object.values(networkInterfaces()).flat().find((i) => i?.family === "IPv4" && !i.internal)?.address;
  it.skipIf(external === undefined)(
    `connections past --max-connections-per-address from one address are closed at once; a freed place is taken again${
      external === undefined ? " SKIPPED: this machine has no IPv4 address besides loopback" : ""
    }`,
    async () => {
      const perAddress = 6;
      const server = await serve({
        host: external!,
        maxConnectionsPerAddress: perAddress,
        headerTimeoutMs: 20_000,
        requestTimeoutMs: 20_000,
        idleTimeoutMs: 20_000,
      });
      const held: Socket[] = [];
      try {
        for (let i = 0; i < perAddress; i++) held.push(await open(server.url));
        await sleep(50);
        const extra = await open(server.url);
        const started = Date.now();
        await new Promise((r) => extra.once("close", r));
        expect(Date.now() - started).toBeLessThan(1_000);
        expect(held.every((s) => !s.destroyed)).toBe(true);
        // One of the address's connections gone: its place is free again.
        held.pop()!.destroy();
        await sleep(100);
        expect(await healthz(server.url)).toBe(200);
      } finally {
        for (const s of held) s.destroy();
        await server.close();
      }
    },
  );

  it("counts connections per address: each IPv4 address alone, an IPv6 /64 as one, loopback not at all", () => {
    const warnings: string[] = [];
    const logger = { isEnabledFor: () => true, warning: (m: string) => warnings.push(m) } as never;
    const admit = createConnectionCaps({ max: Infinity, perAddress: 2 }, logger);
    const socket = fakeSocket;
    const take = (address: string, n: number) => Array.from({ length: n }, () => socket(address)).map(admit);
    expect(take("192.0.2.1", 3)).toEqual([true, true, false]);
    expect(take("192.0.2.2", 2)).toEqual([true, true]); // another host is not held back by the first
    expect(take("2001:db8:0:1::5", 1)).toEqual([true]);
    expect(take("2001:db8:0:1:ffff::9", 2)).toEqual([true, false]); // the same /64
    expect(take("2001:db8:0:2::5", 1)).toEqual([true]);
    // Loopback is not counted: local clients are on the host, and so is a proxy bringing remote ones.
    expect([...take("127.0.0.1", 3), ...take("::1", 3)]).toEqual(Array(6).fill(true));
    // A connection that closes gives its place back.
    const s = socket("198.51.100.7");
    expect([admit(s), admit(socket("198.51.100.7")), admit(socket("198.51.100.7"))]).toEqual([true, true, false]);
    (s as never as EventEmitter).emit("close");
    expect(admit(socket("198.51.100.7"))).toBe(true);
    // Said once (at most every 10 s), naming the address and the flag.
    expect(warnings).toEqual([
      expect.stringMatching(
        /^refused 1 connection\(s\) from .*--max-connections-per-address\), the last from 192\.0\.2\.1;/,
      ),
    ]);
  });

  // The caps are checked before either counts: a refused socket's "close" comes a turn later, and a burst from
  // one address refused by its own cap once held --max-connections places meanwhile, refusing everyone else.
  it("a connection refused by one cap takes no place in the other", () => {
    const warnings: string[] = [];
    const logger = { isEnabledFor: () => true, warning: (m: string) => warnings.push(m) } as never;
    const refused: string[] = [];
    const admit = createConnectionCaps({ max: 4, perAddress: 1, onRefused: (l) => refused.push(l) }, logger);
    expect(admit(fakeSocket("192.0.2.1"))).toBe(true);
    // 30 more from that address, all refused by its cap, none closed yet.
    expect(Array.from({ length: 30 }, () => admit(fakeSocket("192.0.2.1")))).toEqual(Array(30).fill(false));
    // Three places are still free for others.
    expect(["127.0.0.1", "192.0.2.2", "::1"].map((a) => admit(fakeSocket(a)))).toEqual([true, true, true]);
    // The fifth is refused by the global cap, and takes no place in its address's count either.
    expect(admit(fakeSocket("192.0.2.3"))).toBe(false);
    // Each refusal told once, with its cap (for /metrics).
    expect(refused).toEqual([...Array(30).fill("max-connections-per-address"), "max-connections"]);
    expect(warnings).toEqual([
      expect.stringMatching(
        /^refused 1 connection\(s\) from .*--max-connections-per-address\), the last from 192\.0\.2\.1;/,
      ),
      expect.stringMatching(/^refused 1 connection\(s\): 4 are open, the limit \(--max-connections\)/),
    ]);
  });

  it("close() does not wait for TLS handshakes under way (they held it for --header-timeout-ms)", async () => {
    const server = await serve({ tls: { cert: ca, key: tlsKey }, headerTimeoutMs: 20_000, requestTimeoutMs: 20_000 });
    // One says nothing, one sends the start of a ClientHello and stops.
    const silent = await open(server.url.replace("https:", "http:"));
    const partial = await open(server.url.replace("https:", "http:"));
    partial.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
    const gone = [silent, partial].map((s) => new Promise((r) => s.once("close", r)));
    await sleep(100);
    const started = Date.now();
    await server.close();
    // close() waits up to 2 s for responses and 2 s for connections to end, then cuts what is left.
    expect(Date.now() - started).toBeLessThan(6_000);
    await Promise.all(gone);
  });

  it("refusals held back by the warning's 10 s are said when the 10 s are up, not only if another comes", () => {
    vi.useFakeTimers();
    try {
      const warnings: string[] = [];
      const logger = { isEnabledFor: () => true, warning: (m: string) => warnings.push(m) } as never;
      const admit = createConnectionCaps({ max: Infinity, perAddress: 1 }, logger);
      for (const address of ["192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.2"]) {
        admit(fakeSocket(address));
      }
      expect(warnings).toEqual([expect.stringMatching(/^refused 1 connection\(s\) .* the last from 192\.0\.2\.1;/)]);
      vi.advanceTimersByTime(10_000);
      expect(warnings[1]).toMatch(/^refused 2 connection\(s\) .* the last from 192\.0\.2\.2;/);
      vi.advanceTimersByTime(60_000);
      expect(warnings.length).toBe(2); // nothing more to say
    } finally {
      vi.useRealTimers();
    }
  });

  it("streams past --h2-max-streams on one connection are refused (RST_STREAM REFUSED_STREAM)", async () => {
    const session: ClientHttp2Session = h2connect(plain.url);
    session.on("error", () => {});
    try {
      // Sent before the server's SETTINGS reach the client, so the client does not hold the extra ones back.
      const streams: ClientHttp2Stream[] = Array.from({ length: LIMITS.h2MaxStreams + 3 }, () => {
        const s = session.request({
          ":method": "POST",
          ":path": "/taskwire.v1.TaskStats/SubscribeExits",
          "content-type": "application/connect+proto",
        }, { endStream: false });
        s.on("error", () => {});
        return s;
      });
      const refused = await Promise.all(streams.map((s) =>
        Promise.race([
          new Promise<boolean>((r) => s.once("close", () => r(s.rstCode === h2.NGHTTP2_REFUSED_STREAM))),
          sleep(LIMITS.requestTimeoutMs / 2).then(() => false),
        ])
      ));
      expect(refused.filter(Boolean).length).toBe(3);
      expect(refused.slice(0, LIMITS.h2MaxStreams).some(Boolean)).toBe(false);
    } finally {
      session.destroy();
    }
    await expectHealthy();
  });

  it("a client that opens more streams than the SETTINGS it acknowledged loses its connection, not the server", async () => {
    const socket = await open(plain.url);
    const got: { type: number; stream: number; code: number }[] = [];
    let pending: Buffer = Buffer.alloc(0);
    socket.on("data", (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      while (pending.length >= 9 && pending.length >= 9 + pending.readUIntBE(0, 3)) {
        const len = pending.readUIntBE(0, 3);
        const [type, flags, stream] = [pending[3]!, pending[4]!, pending.readUInt32BE(5) & 0x7fff_ffff];
        const code = type === 3 ? pending.readUInt32BE(9) : type === 7 ? pending.readUInt32BE(13) : 0;
        if (type === 4 && (flags & 1) === 0) socket.write(h2Frame(4, 1, 0)); // acknowledge the server's SETTINGS
        got.push({ type, stream, code });
        pending = pending.subarray(9 + len);
      }
    });
    const closed = new Promise((r) => socket.once("close", r));
    socket.write(PREFACE);
    socket.write(h2Frame(4, 0, 0));
    await sleep(100); // the server's SETTINGS (max 4 streams) are in, and acknowledged
    const block = hpackLiterals({
      ":method": "POST",
      ":scheme": "http",
      ":path": "/taskwire.v1.TaskStats/SubscribeExits",
      ":authority": "127.0.0.1",
      "content-type": "application/connect+proto",
    });
    for (let i = 0; i < LIMITS.h2MaxStreams + 3; i++) socket.write(h2Frame(1, 4, 1 + 2 * i, block)); // HEADERS, END_HEADERS
    await Promise.race([closed, sleep(2_000)]);
    expect(socket.destroyed || socket.readableEnded).toBe(true);
    expect(got.some((f) => f.type === 7)).toBe(true); // GOAWAY
    socket.destroy();
    await expectHealthy();
  });

  it("request headers past --max-header-bytes: 431 on HTTP/1.1 (plaintext and TLS), the stream reset on h2", async () => {
    const big = "x".repeat(DEFAULT_TRANSPORT_LIMITS.maxHeaderBytes + 1024);
    const status = await new Promise<number>((resolve, reject) => {
      const req = h1request(`${plain.url}/healthz`, { agent: false, headers: { "x-big": big } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.once("error", reject);
      req.end();
    });
    expect(status).toBe(431);
    const overTls = await closedAfter(tls.url, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${big}\r\n\r\n`, {
      alpn: "http/1.1",
    });
    expect(overTls.got).toMatch(/^HTTP\/1\.1 431/);
    const session = h2connect(plain.url);
    session.on("error", () => {});
    try {
      await new Promise((r) => session.once("remoteSettings", r)); // the limit applies once the client has acknowledged it
      const stream = session.request({ ":path": "/healthz", "x-big": big });
      stream.on("error", () => {});
      stream.resume();
      await new Promise((r) => stream.once("close", r));
      expect(stream.rstCode).toBe(h2.NGHTTP2_ENHANCE_YOUR_CALM);
    } finally {
      session.destroy();
    }
    await expectHealthy();
  });
});

describe("a long SubscribeExits stream outlives every timeout", () => {
  const request = create(SubscribeExitsRequestSchema, { cpumask: "0-7", heartbeatMs: 200 });
  const clients: [string, () => Client<typeof TaskStats>][] = [
    [
      "Connect on HTTP/1.1",
      () => createClient(TaskStats, createConnectTransport({ baseUrl: plain.url, httpVersion: "1.1" })),
    ],
    ["gRPC on h2c", () => createClient(TaskStats, createGrpcTransport({ baseUrl: plain.url }))],
    [
      "Connect on TLS h2",
      () =>
        createClient(TaskStats, createConnectTransport({ baseUrl: tls.url, httpVersion: "2", nodeOptions: { ca } })),
    ],
    [
      "Connect on TLS HTTP/1.1",
      () =>
        createClient(TaskStats, createConnectTransport({ baseUrl: tls.url, httpVersion: "1.1", nodeOptions: { ca } })),
    ],
  ];

  it.each(clients)("%s: heartbeats for 3 s (5x the request timeout, 6x the idle timeout)", async (_name, make) => {
    const ctl = new AbortController();
    let heartbeats = 0;
    let ended: unknown = "still open";
    const run = (async () => {
      try {
        for await (const m of make().subscribeExits(request, { signal: ctl.signal })) if (m.heartbeat) heartbeats++;
        ended = "ended by the server";
      } catch (err) {
        if (!ctl.signal.aborted) ended = ConnectError.from(err);
      }
    })();
    await sleep(3_000);
    expect(ended).toBe("still open");
    expect(heartbeats).toBeGreaterThanOrEqual(8);
    ctl.abort();
    await run;
    await expectHealthy();
  });
});

describe("--max-connections against the descriptor limit", () => {
  it("is lowered to what ulimit -n leaves free past the 128 kept and the listening socket's copies, and says so", () => {
    const out: string[] = [];
    const logger = configureLogging({ write: (line) => out.push(line) });
    const fds = { limit: 1024, open: 40 };
    expect(connectionBudget(10_000, { fds, copies: 3, logger })).toBe(1024 - 40 - 128 - 3);
    expect(out.join("")).toMatch(
      /--max-connections 10000 lowered to 853: the process may open 1024 descriptors \(ulimit -n\) and has 40 open and 3 more for copies/,
    );
    out.length = 0;
    expect(connectionBudget(853, { fds, copies: 3, logger }), "a request that fits").toBe(853);
    expect(connectionBudget(10_000, { fds: undefined, logger }), "no /proc: as requested").toBe(10_000);
    expect(out).toEqual([]);
  });

  it("reads this process's own limit and open descriptors from /proc", () => {
    const fds = descriptors();
    expect(fds?.open).toBeGreaterThanOrEqual(3); // stdin, stdout, stderr at least
    expect(fds!.limit).toBeGreaterThanOrEqual(fds!.open);
  });
});
