/**
 * The one HTTP stack on Node: every request but real gRPC reaches the one
 * hono app, so CORS applies the same on HTTP/1.1, h2c and TLS (h2 and
 * HTTP/1.1 by ALPN); the plaintext port tells HTTP/1.1 from h2c however the
 * preface is split; and connections that reset early do not take it down.
 */
import { request as h1request } from "node:http";
import { type ClientHttp2Session, connect as h2connect } from "node:http2";
import { request as h1srequest } from "node:https";
import { connect as tcpConnect } from "node:net";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorDetailSchema, ErrorReason } from "../src/gen/taskwire/v1/taskstats_pb.ts";
import { type Listening, listenNode } from "../src/runtime/node.ts";
import { createServer } from "../src/server/server.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { loopbackCertificate } from "./helpers.ts";

const ALLOWED = "https://ops.example";
let plain: Listening;
let tls: Listening;
let ca: string;

beforeAll(async () => {
  const made = loopbackCertificate();
  ca = made.cert;
  const make = () => createServer({ source: createSimSource({ cpus: 2, exitRate: 0 }), corsOrigins: [ALLOWED] });
  plain = await listenNode(make(), { port: 0 });
  tls = await listenNode(make(), { port: 0, tls: { cert: ca, key: made.key } });
});
afterAll(async () => {
  await plain?.close();
  await tls?.close();
});

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

type Send = (method: string, path: string, headers: Record<string, string>, body?: string) => Promise<Reply>;

function viaH1(secure: boolean): Send {
  return (method, path, headers, body) =>
    new Promise((resolve, reject) => {
      const url = new URL(path, secure ? tls.url : plain.url);
      const req = (secure ? h1srequest : h1request)(url, { method, headers, ...(secure && { ca }) }, (res) => {
        let data = "";
        res.on("data", (d: Buffer) => (data += d.toString()));
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: data }));
      });
      req.on("error", reject);
      req.end(body);
    });
}

function viaH2(secure: boolean, sessions: ClientHttp2Session[]): Send {
  return (method, path, headers, body) =>
    new Promise((resolve, reject) => {
      const session = h2connect(secure ? tls.url : plain.url, secure ? { ca } : {});
      sessions.push(session);
      const req = session.request({ ":method": method, ":path": path, ...headers });
      let data = "", status = 0, got: Reply["headers"] = {};
      req.on("response", (h) => {
        status = Number(h[":status"]);
        got = h as Reply["headers"];
      });
      req.on("data", (d: Buffer) => (data += d.toString()));
      req.on("end", () => resolve({ status, headers: got, body: data }));
      req.on("error", reject);
      req.end(body);
    });
}

const sessions: ClientHttp2Session[] = [];
afterAll(() => sessions.forEach((s) => s.close()));

const paths: [string, () => Send][] = [
  ["HTTP/1.1", () => viaH1(false)],
  ["h2c", () => viaH2(false, sessions)],
  ["TLS, HTTP/1.1", () => viaH1(true)],
  ["TLS, h2", () => viaH2(true, sessions)],
];

describe.each(paths)("CORS over %s", (_name, send) => {
  const preflight = (origin: string) =>
    send()("OPTIONS", "/taskwire.v1.TaskStats/GetInfo", {
      origin,
      "access-control-request-method": "POST",
      "access-control-request-headers": "content-type,connect-protocol-version",
    });

  it("answers a preflight from an allowed origin with the Connect headers allowed", async () => {
    const res = await preflight(ALLOWED);
    expect(res.status).toBe(204);
    expect(res.headers["access-control-allow-origin"]).toBe(ALLOWED);
    expect(String(res.headers["access-control-allow-headers"]).toLowerCase()).toContain("connect-protocol-version");
    expect(String(res.headers["access-control-allow-methods"])).toContain("POST");
  });

  it("gives another origin no Access-Control headers", async () => {
    const res = await preflight("https://evil.example");
    expect(res.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it("marks an actual Connect call from an allowed origin, exposing Connect's headers", async () => {
    const res = await send()("POST", "/taskwire.v1.TaskStats/GetInfo", {
      origin: ALLOWED,
      "content-type": "application/json",
      "connect-protocol-version": "1",
    }, "{}");
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ source: "sim" });
    expect(res.headers["access-control-allow-origin"]).toBe(ALLOWED);
    expect(String(res.headers["access-control-expose-headers"]).toLowerCase()).toContain("grpc-status");
  });
});

describe.each(paths)("a method an RPC does not take, over %s", (_name, send) => {
  it("is 405 with Allow, saying which methods the path takes", async () => {
    const reply = await send()("PUT", "/taskwire.v1.TaskStats/Register", { "content-type": "application/json" }, "{}");
    expect(reply.status).toBe(405);
    expect(reply.headers["allow"]).toBe("POST");
    expect(JSON.parse(reply.body)).toEqual({
      code: "unimplemented",
      message: "/taskwire.v1.TaskStats/Register takes POST, not PUT",
    });
  });

  it("leaves an unknown path 404", async () => {
    const reply = await send()("GET", "/taskwire.v1.TaskStats/Nope", {});
    expect(reply.status).toBe(404);
    expect(JSON.parse(reply.body).code).toBe("not_found");
  });
});

describe.each(paths)("a content type an RPC does not take, over %s", (_name, send) => {
  it("is 415 saying what the method takes", async () => {
    const type = "application/json; charset=latin1";
    const reply = await send()("POST", "/taskwire.v1.TaskStats/GetInfo", { "content-type": type }, "{}");
    expect(reply.status).toBe(415);
    expect(reply.body).toMatch(
      /^content-type "application\/json; charset=latin1" is not one this method takes: Connect sends application\/json or application\/proto/,
    );
  });

  it("is 415 for a Connect GET without an encoding, naming what to send", async () => {
    const reply = await send()("GET", "/taskwire.v1.TaskStats/GetInfo?message=%7B%7D", {});
    expect(reply.status).toBe(415);
    expect(reply.body).toMatch(/^a Connect GET with encoding="" is not one this method takes: .*\?encoding=json/);
  });
});

describe("a Host or :authority no URL can be made of", () => {
  const expected =
    /^bad request \(Invalid (host header|URL)\): send this server's host name or address as Host or :authority/;
  it.each(["x@127.0.0.1", "127.0.0.1:99999"])("%s over h2c is a 400 saying what to send", async (authority) => {
    const reply = await viaH2(false, sessions)("POST", "/taskwire.v1.TaskStats/GetInfo", {
      ":authority": authority,
      "content-type": "application/json",
    }, "{}");
    expect(reply.status).toBe(400);
    expect(reply.body).toMatch(expected);
  });

  it("127.0.0.1:99999 over HTTP/1.1 is a 400 saying what to send", async () => {
    const reply = await viaH1(false)("GET", "/healthz", { host: "127.0.0.1:99999" });
    expect(reply.status).toBe(400);
    expect(reply.body).toMatch(expected);
  });
});

describe("the plaintext port's protocol sniffer", () => {
  const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  const SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]); // an empty SETTINGS frame

  /** Writes `parts` with a pause between them and returns the server's first bytes. */
  function firstReply(parts: Buffer[]): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const s = tcpConnect(plain.port, "127.0.0.1");
      s.once("data", (d: Buffer) => {
        resolve(d);
        s.destroy();
      });
      s.on("error", reject);
      s.on("connect", async () => {
        for (const p of parts) {
          s.write(p);
          await new Promise((r) => setTimeout(r, 30));
        }
      });
    });
  }

  it.each([1, 3, 14, 23])("takes an h2c preface split after %i bytes as HTTP/2", async (at) => {
    const reply = await firstReply([PREFACE.subarray(0, at), Buffer.concat([PREFACE.subarray(at), SETTINGS])]);
    expect(reply.subarray(0, 8).toString()).not.toMatch(/^HTTP\//);
    expect(reply[3]).toBe(4); // the server's SETTINGS frame
  });

  it("takes bytes that stop matching the preface as HTTP/1.1", async () => {
    const reply = await firstReply([Buffer.from("PRI * HT"), Buffer.from("TP/1.1\r\nhost: x\r\n\r\n")]);
    expect(reply.toString()).toMatch(/^HTTP\/1\.1 /);
  });

  it("survives connections reset before, during and after the preface", async () => {
    const resets = [
      Buffer.alloc(0),
      Buffer.from("PRI * HTTP/2"),
      Buffer.from("GET /healthz HTTP/1.1\r\nhost"),
      PREFACE,
    ];
    for (let i = 0; i < 60; i++) {
      await new Promise<void>((resolve) => {
        const s = tcpConnect(plain.port, "127.0.0.1", () => {
          const bytes = resets[i % resets.length]!;
          if (bytes.length > 0) s.write(bytes);
          setTimeout(() => s.resetAndDestroy(), 5);
        });
        s.on("error", () => {});
        s.on("close", () => resolve());
      });
    }
    const res = await fetch(`${plain.url}/healthz`);
    expect(await res.json()).toMatchObject({ status: "ok" });
  });
});

describe("real gRPC", () => {
  it("over HTTP/1.1 gets a 415 that says what to use", async () => {
    const res = await viaH1(false)(
      "POST",
      "/taskwire.v1.TaskStats/GetInfo",
      { "content-type": "application/grpc" },
      "",
    );
    expect(res.status).toBe(415);
    expect(res.body).toMatch(/HTTP\/2/);
  });

  it("to an unknown method over h2c gets UNIMPLEMENTED with an ErrorDetail, the path clipped", async () => {
    const res = await viaH2(false, sessions)("POST", `/taskwire.v1.TaskStats/Nope${"x".repeat(5000)}`, {
      "content-type": "application/grpc",
    }, "");
    expect(res.headers["grpc-status"]).toBe("12");
    const plainHeaders = Object.entries(res.headers).filter(([k]) => !k.startsWith(":")).map((
      [k, v],
    ) => [k, String(v)]);
    const err = findTrailerError(new Headers(plainHeaders as [string, string][]));
    expect(err?.rawMessage).toMatch(/^no method "\/taskwire\.v1\.TaskStats\/Nopex+…" \(5027 characters\)$/);
    expect(err?.findDetails(ErrorDetailSchema)[0]?.reason).toBe(ErrorReason.INVALID_REQUEST);
  });
});
