/**
 * Unary calls under way are limited per principal and in all, a call lasting
 * until its response is delivered: a client that asks and never reads (an
 * HTTP/2 window of 0) made the server hold every response it asked for, and
 * 40 such connections grew its memory by 400 MB. Against a real server on
 * loopback, with authentication (two principals) and small limits.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { type ClientHttp2Session, connect as h2connect, constants as h2constants } from "node:http2";
import type { OutgoingHttpHeaders } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTaskwireClient, LimitExceededError } from "@taskwire/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAuthenticator } from "../src/auth/authenticator.ts";
import { hashToken, newToken } from "../src/auth/tokens.ts";
import { createAdmission } from "../src/core/admission.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { eventually, type Running, sleep, spawnServer, startServer } from "./helpers.ts";

describe("admission's count of calls under way", () => {
  it("counts each held call until its release (once), per caller bucket and in all", () => {
    const a = createAdmission({ maxCalls: 3, maxCallsPerPrincipal: 2 });
    const first = a.holdCall("alice"), second = a.holdCall("alice");
    expect(a.callsRefusal("alice")).toBeUndefined(); // two under way, this one (the second) counted
    const third = a.holdCall("alice");
    expect(a.callsRefusal("alice")).toMatch(/"alice" has 2 calls under way.*--max-calls-in-flight-per-principal/);
    expect(() => a.call("alice")).not.toThrow(); // the rate alone: calls under way are judged as they arrive
    third();
    third(); // a second release does nothing
    expect(a.callsRefusal("alice")).toBeUndefined();
    const bob = a.holdCall("bob");
    expect(a.callsRefusal("bob")).toBeUndefined(); // three in all: at the limit, not past it
    const bob2 = a.holdCall("bob");
    expect(a.callsRefusal("bob")).toMatch(/server has 3 calls under way.*--max-calls-in-flight\)/);
    const carol = a.holdCall("carol");
    expect(a.callsRefusal("carol")).toBeUndefined(); // its one call under way is kept past the total (5 in all)
    const carol2 = a.holdCall("carol");
    expect(a.callsRefusal("carol")).toMatch(/server has 5 calls under way/);
    for (const release of [first, second, bob, bob2, carol, carol2]) release();
    expect(a.callsRefusal("alice")).toBeUndefined();
  });

  it("counts anonymous callers by their address's bucket", () => {
    const a = createAdmission({ maxCallsPerPrincipal: 1 });
    a.holdCall("anonymous@127.0.0.1");
    a.holdCall("anonymous@127.0.0.2");
    expect(a.callsRefusal("anonymous@127.9.9.9")).toMatch(/anonymous@loopback/);
    expect(a.callsRefusal("anonymous@192.0.2.1")).toBeUndefined();
  });
});

describe("a principal that does not read its responses", () => {
  let running: Running;
  const tokens = { hog: newToken(), other: newToken(), third: newToken() };
  const sessions: ClientHttp2Session[] = [];
  beforeAll(async () => {
    const file = join(mkdtempSync(join(tmpdir(), "taskwire-calls-")), "auth.json");
    writeFileSync(
      file,
      JSON.stringify({
        principals: { hog: { roles: ["read", "subscribe"] }, other: { roles: ["read"] }, third: { roles: ["read"] } },
        tokens: {
          [hashToken(tokens.hog)]: "hog",
          [hashToken(tokens.other)]: "other",
          [hashToken(tokens.third)]: "third",
        },
      }),
    );
    running = await startServer(createSimSource({ cpus: 2, exitRate: 0 }), {}, {
      authenticator: createAuthenticator({ tokenFile: file }),
      admission: { maxCallsPerPrincipal: 4, maxCalls: 6, maxStreamsPerPrincipal: 3 },
    });
  });
  afterAll(async () => {
    for (const s of sessions) s.destroy();
    await running?.close();
  });

  // `n` GetInfo calls on an HTTP/2 connection whose window is 0: the server sends each response's headers and
  // then holds its body. Resolves once every response has begun (or its stream was reset).
  async function unread(token: string, n: number, session = window0()): Promise<ClientHttp2Session> {
    const answers = await Promise.all(Array.from({ length: n }, () => ask(session, token)));
    if (answers.some((a) => a !== "200")) throw new Error(`answered ${answers.join(", ")}`);
    return session;
  }

  function window0(): ClientHttp2Session {
    const session = h2connect(running.url, { settings: { initialWindowSize: 0 } });
    session.on("error", () => {});
    sessions.push(session);
    return session;
  }

  // One GetInfo call (or another request): its status, or "reset <code>".
  function ask(
    session: ClientHttp2Session,
    token: string | undefined,
    headers: OutgoingHttpHeaders = {},
  ): Promise<string> {
    return new Promise((resolve) => {
      const stream = session.request({
        ":method": "POST",
        ":path": "/taskwire.v1.TaskStats/GetInfo",
        "content-type": "application/json",
        ...(token !== undefined && { authorization: `Bearer ${token}` }),
        ...headers,
      });
      stream.on("error", () => {});
      stream.once("response", (h) => resolve(String(h[":status"])));
      stream.once("close", () => resolve(`reset ${stream.rstCode}`));
      stream.end(headers[":method"] === "GET" ? undefined : "{}");
    });
  }

  // A SubscribeExits stream on CPU 0: `opened` resolves with undefined once its opening message came, else the error.
  // (An iterator's return() does not end a connect-es stream: its signal does.)
  function subscribe(token: string): { opened: Promise<unknown>; close(): void } {
    const ctl = new AbortController();
    const it = as(token).subscribeExits({ cpumask: "0" }, { signal: ctl.signal })[Symbol.asyncIterator]();
    return { opened: refusal(it.next()), close: () => ctl.abort() };
  }

  // The principal can have its whole limit (4) under way again: nothing of what came before is still counted.
  async function free(token: string): Promise<void> {
    const c = as(token);
    await eventually(async () =>
      (await Promise.all(Array.from({ length: 4 }, () => refusal(c.getInfo({}))))).every((e) => e === undefined)
    );
  }

  // retry: false, so that a refusal is seen as it is (the SDK would retry it after retryAfterMs).
  const as = (token: string, protocol: "connect" | "grpc" | "grpc-web" = "connect") =>
    createTaskwireClient(running.url, { token, protocol, retry: false });

  async function refusal(call: Promise<unknown>): Promise<unknown> {
    return await call.then(() => undefined, (err: unknown) => err);
  }

  it("is refused past its limit (RESOURCE_EXHAUSTED on every protocol, 429 elsewhere); others are not", async () => {
    const held = await unread(tokens.hog, 4);
    for (const protocol of ["connect", "grpc-web", "grpc"] as const) {
      const err = await refusal(as(tokens.hog, protocol).getInfo({}));
      expect(err, protocol).toBeInstanceOf(LimitExceededError);
      expect((err as Error).message).toMatch(/"hog" has 4 calls under way.*read the responses/);
      expect((err as LimitExceededError).retryAfterMs, protocol).toBe(1000); // changed nothing: the SDK may retry
    }
    const health = await fetch(`${running.url}/healthz`, { headers: { authorization: `Bearer ${tokens.hog}` } });
    expect(health.status).toBe(429);
    expect(await health.text()).toContain("--max-calls-in-flight-per-principal");
    // Another principal is not held back by this one's unread responses.
    expect((await as(tokens.other).getInfo({})).serverVersion).toBeTruthy();

    // Its responses read (here: its connection gone), the principal calls again, as many at once as its limit
    // allows: the refused calls left nothing counted behind.
    held.destroy();
    await eventually(async () => (await refusal(as(tokens.hog).getInfo({}))) === undefined);
    const hog = as(tokens.hog);
    await Promise.all(Array.from({ length: 4 }, () => hog.getInfo({})));
  });

  it("is refused past the server's limit in all, whoever holds them", async () => {
    const hog = await unread(tokens.hog, 4);
    const other = await unread(tokens.other, 2); // 6 under way: the limit in all
    const err = await refusal(as(tokens.other).getInfo({}));
    expect(err).toBeInstanceOf(LimitExceededError);
    expect((err as Error).message).toMatch(/server has 6 calls under way.*--max-calls-in-flight\)/);
    // A principal with nothing under way keeps its one call, past the total: it is not crowded out.
    expect((await as(tokens.third).getInfo({})).serverVersion).toBeTruthy();
    other.destroy();
    await eventually(async () => (await refusal(as(tokens.other).getInfo({}))) === undefined);
    hog.destroy();
    await eventually(async () => (await refusal(as(tokens.hog).getInfo({}))) === undefined);
  });

  it("past twice its limit, not reading its refusals either, gets its streams reset unanswered (REFUSED_STREAM)", async () => {
    const session = await unread(tokens.hog, 4);
    // Refused (429, RESOURCE_EXHAUSTED) while its calls under way are within twice the limit; each refusal held too.
    for (let i = 0; i < 4; i++) expect(await ask(session, tokens.hog)).toBe("429");
    expect(await ask(session, tokens.hog)).toBe(`reset ${h2constants.NGHTTP2_REFUSED_STREAM}`);
    const second = window0();
    expect(await ask(second, tokens.hog)).toBe(`reset ${h2constants.NGHTTP2_REFUSED_STREAM}`);
    // Another principal's first call: 9 under way in all, past the limit in all (6), but a caller's one call is kept.
    expect(await ask(second, tokens.other)).toBe("200");
    expect(await ask(second, tokens.other)).toBe("429"); // its second is refused for the total, within twice it
    session.destroy();
    second.destroy();
    for (const token of [tokens.hog, tokens.other]) {
      await eventually(async () => (await refusal(as(token).getInfo({}))) === undefined);
    }
  });

  it("without valid credentials, is counted apart in a small pool, and takes nothing from principals", async () => {
    const session = window0();
    const health = { ":method": "GET", ":path": "/healthz" };
    const answers = await Promise.all(Array.from({ length: 16 }, () => ask(session, undefined, health)));
    expect(answers).toEqual(Array(16).fill("200"));
    const refused = await fetch(`${running.url}/healthz`);
    expect(refused.status).toBe(429);
    expect(await refused.text()).toMatch(/address "unauthenticated@loopback" has 16 calls under way/);
    expect((await as(tokens.hog).getInfo({})).serverVersion).toBeTruthy(); // the principals' pool is untouched
    session.destroy();
    await eventually(async () => (await fetch(`${running.url}/healthz`)).status === 200);
  });

  it("counts a refused stream request until its refusal is read; an admitted stream is counted as a stream", async () => {
    const session = window0();
    const wrongType = { ":path": "/taskwire.v1.TaskStats/SubscribeExits", "content-type": "text/plain" };
    const answers = await Promise.all(Array.from({ length: 4 }, () => ask(session, tokens.hog, wrongType)));
    expect(answers).toEqual(Array(4).fill("415"));
    expect(await refusal(as(tokens.hog).getInfo({}))).toBeInstanceOf(LimitExceededError);
    session.destroy();
    await free(tokens.hog);

    const streams = Array.from({ length: 3 }, () => subscribe(tokens.hog));
    for (const s of streams) expect(await s.opened).toBeUndefined();
    await free(tokens.hog); // three streams open (the limit in this test), and four calls at once still fit
    for (const s of streams) s.close();
    await eventually(() => running.server.stats().streams === 0);
  });

  it("keeps a stream that ended unread (its deadline passed, the client's window 0) counted as a stream", async () => {
    const session = window0();
    // Connect's streaming protocol over HTTP/2: one enveloped JSON request, and a deadline of 300 ms.
    const body = Buffer.from(JSON.stringify({ cpumask: "0" }));
    const envelope = Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), body]);
    const statuses = await Promise.all(Array.from({ length: 3 }, () =>
      new Promise<string>((resolve) => {
        const stream = session.request({
          ":method": "POST",
          ":path": "/taskwire.v1.TaskStats/SubscribeExits",
          "content-type": "application/connect+json",
          "connect-timeout-ms": "300",
          authorization: `Bearer ${tokens.hog}`,
        });
        stream.on("error", () => {});
        stream.once("response", (h) => resolve(String(h[":status"])));
        stream.end(envelope);
      })));
    expect(statuses).toEqual(["200", "200", "200"]);
    await eventually(() => running.server.stats().streams === 3); // admitted, all three
    await eventually(() => running.server.stats().streams === 0); // past the deadline: ended, end-stream unsent
    const late = subscribe(tokens.hog);
    const err = await late.opened;
    expect(err).toBeInstanceOf(LimitExceededError);
    expect((err as Error).message).toMatch(/--max-streams-per-principal/);
    session.destroy();
    await eventually(async () => {
      const s = subscribe(tokens.hog);
      const opened = await s.opened;
      s.close();
      return opened === undefined;
    });
  });

  it("judges each call as it arrives: of 5 sent at once on one HTTP/2 connection past a limit of 4, 4 are answered", async () => {
    const grpc = as(tokens.hog, "grpc");
    const answers = await Promise.all(Array.from({ length: 5 }, () => refusal(grpc.getInfo({}))));
    expect(answers.filter((a) => a === undefined).length).toBeGreaterThanOrEqual(4);
    for (const a of answers) if (a !== undefined) expect(a).toBeInstanceOf(LimitExceededError);
  });

  it("does not keep counting HTTP/1.1 requests pipelined behind one whose socket closed", async () => {
    const { port } = new URL(running.url);
    const pipelined = (token: string | undefined, n: number) =>
      `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n${
        token === undefined ? "" : `Authorization: Bearer ${token}\r\n`
      }\r\n`
        .repeat(n);
    // A principal that sends 10 and closes without reading (the server reads 10 requests and queues their responses).
    const socket = connect(Number(port), "127.0.0.1");
    socket.on("error", () => {});
    socket.write(pipelined(tokens.hog, 10));
    await sleep(300);
    socket.destroy();
    await free(tokens.hog);
    // A caller without a token that reads everything: its connection is closed after the first response, which
    // leaves the other 9 queued and never sent.
    for (let round = 0; round < 3; round++) {
      const anon = connect(Number(port), "127.0.0.1");
      anon.on("error", () => {});
      anon.resume();
      anon.write(pipelined(undefined, 10));
      await new Promise((resolve) => anon.once("close", resolve));
    }
    await eventually(async () => {
      const all = await Promise.all(Array.from({ length: 16 }, () => fetch(`${running.url}/healthz`)));
      return all.every((r) => r.status === 200);
    });
  });

  it("leaves no count behind after many calls read in turn (HTTP/1.1 and HTTP/2)", async () => {
    for (const protocol of ["connect", "grpc"] as const) {
      const c = as(tokens.other, protocol);
      for (let i = 0; i < 40; i++) await c.getInfo({});
      await Promise.all(Array.from({ length: 4 }, () => c.getInfo({})));
    }
  });
});

describe("the default limits", () => {
  // A server process of its own (`taskwire serve`, built): a client in the server's process could not get its
  // requests in ahead of the server's answers, and so never has its whole burst under way at once.
  it("let a client fire its whole call burst at once (380 calls over HTTP/1.1, each a connection)", async () => {
    const root = new URL("..", import.meta.url).pathname;
    const server = await spawnServer(
      "node",
      [`${root}bin/taskwire.js`, "serve", "--source", "sim", "--port", "0"],
      root,
    );
    try {
      const client = createTaskwireClient(server.url);
      const answers = await Promise.all(Array.from({ length: 380 }, () => client.getInfo({}).then(() => "ok", String)));
      expect(answers.filter((a) => a !== "ok")).toEqual([]);
    } finally {
      server.stop();
    }
  });
});
