/**
 * Requests whose Host or :authority makes no URL (none at all on HTTP/1.0, a
 * port that is no number or out of range) or hides a host (userinfo) get an
 * answer and never take the server down: connect-node builds a request's URL
 * from them and throws synchronously, and a request listener that throws is
 * an uncaught exception once a connection is past its first request (found
 * in review: one such call with no token made `taskwire serve` exit). Each
 * answer matches what the same call gets with an Origin header.
 *
 * The server is set up as `taskwire serve --host 0.0.0.0 --token-file F`
 * sets it up (authentication on, no Host check), then with the Host check.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { connect as h2connect } from "node:http2";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createAuthenticator } from "../src/auth/authenticator.ts";
import { createHostCheck } from "../src/auth/hosts.ts";
import { hashToken, newToken } from "../src/auth/tokens.ts";
import { type Listening, listenNode } from "../src/runtime/node.ts";
import { createServer } from "../src/server/server.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";

const token = newToken();
const P = "/taskwire.v1.TaskStats/GetInfo";
const uncaught: unknown[] = [];
const onUncaught = (e: unknown) => uncaught.push(e);

/** Sends `parts` on one connection, each after the previous one's answer has had 200 ms; resolves with all it got. */
function raw(port: number, parts: string[], ms = 1500): Promise<string> {
  return new Promise((resolve) => {
    const s = netConnect(port, "127.0.0.1");
    let out = "";
    s.on("data", (d) => (out += d.toString("latin1")));
    s.on("error", () => {});
    parts.forEach((p, i) => setTimeout(() => s.writable && s.write(p), i * 200));
    const t = setTimeout(() => (s.destroy(), resolve(out + "<<no answer>>")), ms);
    s.on("close", () => (clearTimeout(t), resolve(out)));
  });
}

async function serve(hostCheck: boolean): Promise<Listening> {
  const file = join(mkdtempSync(join(tmpdir(), "taskwire-authority-")), "auth.json");
  writeFileSync(
    file,
    JSON.stringify({ principals: { a: { roles: ["read", "subscribe"] } }, tokens: { [hashToken(token)]: "a" } }),
  );
  const server = createServer({
    source: createSimSource({ cpus: 2, exitRate: 0, seed: 1 }),
    authenticator: createAuthenticator({ tokenFile: file }),
    ...(hostCheck && { hostAllowed: createHostCheck() }),
  });
  return listenNode(server, { port: 0 });
}

// With the token: with authentication on, a connection is kept only after requests that carry valid credentials
// (runtime/node.ts closeAfter), and these tests need one past its first request.
const healthz =
  `GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nConnection: keep-alive\r\n\r\n`;
const getInfoNoHost = (origin: string) =>
  `POST ${P} HTTP/1.0\r\n${origin}Connection: keep-alive\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`;

describe("auth on, no Host check (serve --host 0.0.0.0 --token-file)", () => {
  let l: Listening;
  beforeAll(async () => {
    process.on("uncaughtException", onUncaught);
    l = await serve(false);
  });
  afterAll(async () => {
    process.off("uncaughtException", onUncaught);
    await l?.close();
  });
  afterEach(() => void (uncaught.length = 0));

  it("an HTTP/1.0 call without Host, no token, on a kept-alive connection: no uncaught exception (process crash)", async () => {
    const out = await raw(l.port, [healthz, getInfoNoHost("")]);
    // universalRequestFromNodeRequest throws "unable to determine request authority" synchronously in the
    // 'request' listener (outside the pacer's try): an uncaught exception; `taskwire serve` has no handler for it.
    expect(uncaught.map(String)).toEqual([]);
    expect(out).toMatch(/HTTP\/1\.1 200 OK[\s\S]*HTTP\/1\.1 400 /); // as with Origin (the app: hono's 400)
  });

  it("the same as a connection's first request gets an answer (the app's 400), not silence", async () => {
    const out = await raw(l.port, [getInfoNoHost("")]);
    expect(out).toMatch(/^HTTP\/1\.1 400 /);
  });

  it("with Origin (the app) both get 400", async () => {
    const out = await raw(l.port, [healthz, getInfoNoHost("Origin: http://127.0.0.1\r\n")]);
    expect(out).toMatch(/HTTP\/1\.1 200 OK[\s\S]*HTTP\/1\.1 400 /);
    expect(uncaught).toEqual([]);
  });
});

describe("Host check on (loopback default): every route reads Host as the app does", () => {
  let l: Listening;
  beforeAll(async () => {
    process.on("uncaughtException", onUncaught);
    l = await serve(true);
  });
  afterAll(async () => {
    process.off("uncaughtException", onUncaught);
    await l?.close();
  });
  afterEach(() => void (uncaught.length = 0));

  // hostName() drops the port ("localhost" passes the check); connect-node's universalRequestFromNodeRequest
  // then throws on new URL(path, "http://localhost:abc") synchronously in the 'request' listener.
  it.each(["localhost:abc", "localhost:99999"])(
    "Host %s, no token, on a kept-alive connection: no uncaught exception (process crash), a 400 as the app answers",
    async (host) => {
      const out = await raw(l.port, [
        healthz,
        `POST ${P} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`,
      ]);
      expect(uncaught.map(String)).toEqual([]);
      expect(out).toMatch(/HTTP\/1\.1 200 OK[\s\S]*HTTP\/1\.1 400 /);
    },
  );

  const call = (host: string, origin: string) =>
    `POST ${P} HTTP/1.1\r\nHost: ${host}\r\n${origin}Authorization: Bearer ${token}\r\n` +
    "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
  const status = async (host: string, origin: string) =>
    /^HTTP\/1\.1 (\d+)/.exec(await raw(l.port, [call(host, origin)]))?.[1];

  it("h2c, :authority localhost:abc on a session's second stream: no uncaught exception", async () => {
    const session = h2connect(`http://127.0.0.1:${l.port}`);
    session.on("error", () => {});
    const get = (headers: Record<string, string>, body?: string) =>
      new Promise<string>((resolve) => {
        const q = session.request(headers);
        let status = "";
        q.on("response", (h) => (status = String(h[":status"])));
        q.on("error", (e) => resolve(`error ${e.message}`));
        q.on("close", () => resolve(status || "closed"));
        q.resume();
        q.end(body);
        setTimeout(() => resolve(status || "<<no answer>>"), 1500);
      });
    expect(await get({ ":path": "/healthz", authorization: `Bearer ${token}` })).toBe("200");
    const second = await get(
      { ":method": "POST", ":path": P, ":authority": "localhost:abc", "content-type": "application/json" },
      "{}",
    );
    session.destroy();
    expect(uncaught.map(String)).toEqual([]);
    expect(second).toBe("400");
  });

  it("real gRPC (h2c), :authority localhost:abc on a session's second stream: INVALID_ARGUMENT, the session goes on", async () => {
    const session = h2connect(`http://127.0.0.1:${l.port}`);
    session.on("error", () => {});
    const call = (authority: string) =>
      new Promise<Record<string, unknown>>((resolve) => {
        const q = session.request({
          ":method": "POST",
          ":path": P,
          ":authority": authority,
          "content-type": "application/grpc",
          te: "trailers",
          // A call without credentials would end the session after it (runtime/node.ts closeAfter).
          authorization: `Bearer ${token}`,
        });
        let headers: Record<string, unknown> = {};
        q.on("response", (h) => (headers = { ...h }));
        q.on("trailers", (t) => (headers = { ...headers, ...t }));
        q.on("error", (e) => resolve({ error: e.message }));
        q.on("close", () => resolve(headers));
        q.resume();
        q.end(Buffer.from([0, 0, 0, 0, 0]));
        setTimeout(() => resolve({ "no answer": true }), 1500);
      });
    expect((await call(`127.0.0.1:${l.port}`))["grpc-status"]).toBe("0");
    const bad = await call("localhost:abc");
    expect(uncaught.map(String)).toEqual([]);
    expect(bad["grpc-status"]).toBe("3");
    expect(decodeURIComponent(String(bad["grpc-message"]))).toMatch(
      /:authority "localhost:abc" is not a host\[:port\]/,
    );
    expect((await call(`127.0.0.1:${l.port}`))["grpc-status"]).toBe("0"); // the session still serves
    session.destroy();
  });

  it.each(["localhost:1@evil.example", "127.1"])("Host %s: same status with and without Origin", async (host) => {
    expect(await status(host, "")).toBe(await status(host, "Origin: http://127.0.0.1\r\n"));
  });
});
