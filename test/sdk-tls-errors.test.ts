/**
 * The SDK's TLS failures say what to do (clients/ts/src/_transport-failures.ts),
 * against real servers with real certificates: a CA and a server certificate
 * it signed, made with openssl in a temporary directory.
 */
import { Code, ConnectError, createTaskwireClient, explainTlsFailure } from "@taskwire/client";
import { execFile } from "node:child_process";
import { type AddressInfo, createServer as createNetServer } from "node:net";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SERVER_SENT_NOTHING } from "../clients/ts/src/_transport-failures.ts";
import { type Listening, listenNode } from "../src/runtime/node.ts";
import { createServer } from "../src/server/server.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { loopbackCertificate } from "./helpers.ts";
import { createTestCa } from "./test-ca.ts";

/** A CA, and a certificate for 127.0.0.1 it signed (a server's chain: "self-signed certificate in certificate chain"). */
function caSigned(): { ca: string; caFile: string; cert: string; key: string } {
  const ca = createTestCa("ca", { prefix: "taskwire-sdk-tls-" });
  const s = ca.sign("s", { cn: "127.0.0.1", san: "IP:127.0.0.1" });
  // The server sends its chain (its certificate, then the CA's), as a server behind a private CA often does.
  return { ca: ca.cert, caFile: ca.certFile, cert: s.cert + ca.cert, key: s.key };
}

const protocols = ["connect", "grpc-web", "grpc"] as const;
let made: ReturnType<typeof caSigned>;
let tls: Listening;
let plain: Listening;

beforeAll(async () => {
  made = caSigned();
  tls = await listenNode(createServer({ source: createSimSource() }), {
    host: "127.0.0.1",
    port: 0,
    tls: { cert: made.cert, key: made.key },
  });
  plain = await listenNode(createServer({ source: createSimSource() }), { host: "127.0.0.1", port: 0 });
}, 30_000);
afterAll(async () => {
  await tls?.close();
  await plain?.close();
});

/** The error a unary call and a stream of `url` throw. */
async function failures(url: string, options: Parameters<typeof createTaskwireClient>[1]): Promise<unknown[]> {
  const client = createTaskwireClient(url, { ...options, retry: false });
  const errors: unknown[] = [];
  await client.getInfo({}, { timeoutMs: 5000 }).catch((e: unknown) => errors.push(e));
  try {
    for await (const _ of client.subscribeExits({ listenerId: "x" }, { timeoutMs: 5000 })) break;
  } catch (e) {
    errors.push(e);
  }
  expect(errors).toHaveLength(2);
  return errors;
}

function explained(err: unknown, code: Code, text: RegExp): ConnectError {
  expect(err).toBeInstanceOf(ConnectError);
  const e = err as ConnectError;
  expect(e.code).toBe(code);
  expect(e.rawMessage).toMatch(text);
  // connect-es's own error stays reachable, with Node's beneath it.
  expect(e.cause).toBeInstanceOf(ConnectError);
  expect((e.cause as ConnectError).code).toBe(code);
  return e;
}

describe.each(protocols)("the SDK's TLS failures over %s say what to do", (protocol) => {
  it("an untrusted certificate: pass the CA as tls: { ca }; a CA that did not sign it is named", async () => {
    for (const err of await failures(tls.url, { protocol })) {
      const e = explained(
        err,
        Code.Internal,
        /^cannot trust the TLS certificate of https:\/\/127\.0\.0\.1:\d+: self-signed certificate in certificate chain; pass the CA that signed it .*with tls: \{ ca \} \(the PEM text/,
      );
      expect(e.rawMessage).not.toMatch(/CA given/);
    }
    const other = loopbackCertificate().cert;
    for (const err of await failures(tls.url, { protocol, tls: { ca: other } })) {
      explained(err, Code.Internal, /; the CA given \(tls\.ca\) did not sign it; pass the CA that signed it/);
    }
    expect((await createTaskwireClient(tls.url, { protocol, tls: { ca: made.ca } }).getInfo({})).source).toBe("sim");
  });

  it("a certificate for another name says the names it holds", async () => {
    const url = tls.url.replace("127.0.0.1", "localhost");
    for (const err of await failures(url, { protocol, tls: { ca: made.ca } })) {
      explained(
        err,
        Code.Internal,
        /is not for that name: .*connect by a name or address it holds \(it holds IP Address:127\.0\.0\.1\)/,
      );
    }
  });

  it("https:// to a plaintext server: use http://", async () => {
    for (const err of await failures(plain.url.replace("http:", "https:"), { protocol })) {
      explained(err, Code.Internal, /^https:\/\/127\.0\.0\.1:\d+ does not answer TLS \(\w+\): .* use http:\/\/$/);
    }
  });
});

describe("http:// to a TLS server", () => {
  it.each(["connect", "grpc-web"] as const)("over %s: it hung up; use https:// (and tls: { ca })", async (protocol) => {
    for (const err of await failures(tls.url.replace("https:", "http:"), { protocol })) {
      explained(
        err,
        Code.Aborted,
        /^http:\/\/127\.0\.0\.1:\d+ hung up on a plaintext request: .*use https:\/\/ \(and tls: \{ ca \} .*\); else socket hang up$/,
      );
    }
  });
});

describe("gRPC over http:// to a TLS server", () => {
  // Node's TLS server closes a plaintext connection without a byte; connect-node said "[canceled] http/2 stream
  // closed with error code CANCEL (0x8)", as if the caller had cancelled.
  it("says the server closed without a byte of HTTP/2: use https:// if it serves TLS; UNAVAILABLE", async () => {
    for (const err of await failures(tls.url.replace("https:", "http:"), { protocol: "grpc" })) {
      const e = explained(
        err,
        Code.Unavailable,
        /^http:\/\/127\.0\.0\.1:\d+ closed the connection without a byte of HTTP\/2: if that server serves TLS \(--tls-cert\), use https:\/\/ \(and tls: \{ ca \} .*\); else it is no HTTP\/2 server, or it refused the connection$/,
      );
      expect((e.cause as ConnectError).rawMessage).toBe(SERVER_SENT_NOTHING);
    }
  });

  it("a server that sent its SETTINGS before closing is not said so (nor is a caller's cancel)", async () => {
    // An h2c server's first frame (an empty SETTINGS), then the connection closed under the call.
    const server = createNetServer((socket) => {
      socket.on("error", () => {});
      socket.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]), () => setTimeout(() => socket.end(), 50));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      for (const err of await failures(url, { protocol: "grpc" })) {
        expect(err).toBeInstanceOf(ConnectError);
        expect((err as ConnectError).rawMessage).not.toMatch(/without a byte|TLS/);
      }
    } finally {
      server.close();
    }
    const abort = new AbortController();
    const call = createTaskwireClient(plain.url, { protocol: "grpc" }).getInfo({}, { signal: abort.signal });
    abort.abort();
    await expect(call).rejects.toMatchObject({ code: Code.Canceled });
  });
});

// The SDK over fetch (mod.ts), as Deno and Bun run it from source: their fetch errors are not Node's.
describe.each(
  [
    ["deno", ["run", "--allow-all"], "DENO_CERT", /DENO_CERT=FILE or deno run --cert FILE/],
    ["bun", [], "NODE_EXTRA_CA_CERTS", /NODE_EXTRA_CA_CERTS=FILE in Bun's environment/],
  ] as const,
)("the SDK's TLS failures on %s say what to do", (runtime, args, caVariable, caSetting) => {
  const root = new URL("..", import.meta.url).pathname;
  /** Each call's outcome under `runtime` for `urls`, with `env` added to the environment. */
  async function calls(urls: string[], env: Record<string, string> = {}) {
    const { stdout } = await promisify(execFile)(
      `${root}node_modules/.bin/${runtime}`,
      [...args, `${root}test/runtimes/sdk-tls.ts`, ...urls],
      { cwd: root, timeout: 60_000, env: { ...process.env, ...env } },
    );
    const out = stdout.trim().split("\n").map((l) =>
      JSON.parse(l) as { url: string; code: number | "ok"; message: string }
    );
    expect(out).toHaveLength(4 * urls.length); // a call and a stream, over Connect and gRPC-Web
    return (url: string) => out.filter((o) => o.url === url);
  }

  it(
    "an untrusted certificate, https:// to plain HTTP, http:// to TLS; trusted through the runtime's setting",
    async () => {
      const http = tls.url.replace("https:", "http:"), https = plain.url.replace("http:", "https:");
      const of = await calls([tls.url, https, http]);
      for (const o of of(tls.url)) {
        expect(o.message).toMatch(
          /^cannot trust the TLS certificate of https:\/\/127\.0\.0\.1:\d+: .*; pass the CA that signed it/,
        );
        expect(o.message).toMatch(caSetting);
      }
      for (const o of of(https)) expect(o.message).toMatch(/ does not answer TLS \(.*\): .*; use http:\/\/$/);
      for (const o of of(http)) {
        expect(o.message).toMatch(/^http:\/\/127\.0\.0\.1:\d+ hung up on a plaintext request: .*use https:\/\/ /);
        expect(o.message).toMatch(caSetting);
      }
      const trusted = await calls([tls.url], { [caVariable]: made.caFile });
      expect(trusted(tls.url).map((o) => o.code)).toEqual(["ok", "ok", "ok", "ok"]);
    },
    90_000,
  );

  it("a certificate for another name", async () => {
    const url = tls.url.replace("127.0.0.1", "localhost");
    for (const o of (await calls([url], { [caVariable]: made.caFile }))(url)) {
      expect(o.message).toMatch(/is not for that name: .*; connect by a name or address it holds/);
    }
  }, 90_000);
});

describe("explainTlsFailure", () => {
  it("leaves other errors alone, and words a fix with the caller's own settings", () => {
    expect(explainTlsFailure(new ConnectError("not found", Code.NotFound), "https://h:1", { caSetting: "x" }))
      .toBeUndefined();
    const node = Object.assign(new Error("self-signed certificate"), { code: "DEPTH_ZERO_SELF_SIGNED_CERT" });
    const err = new ConnectError(node.message, Code.Internal, undefined, undefined, node);
    expect(explainTlsFailure(err, "https://h:1", { caSetting: "--ca FILE", caGiven: "--ca: a.pem" })).toBe(
      "cannot trust the TLS certificate of https://h:1: self-signed certificate; the CA given (--ca: a.pem) did not sign it; pass the CA that signed it (for a self-signed server, its certificate) with --ca FILE",
    );
  });
});
