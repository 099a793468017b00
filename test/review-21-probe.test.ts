import { connect as netConnect } from "node:net";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, it } from "vitest";
import { createAuthenticator } from "../src/auth/authenticator.ts";
import { createHostCheck } from "../src/auth/hosts.ts";
import { hashToken, newToken } from "../src/auth/tokens.ts";
import { createServer } from "../src/server/server.ts";
import { listenNode, type Listening } from "../src/runtime/node.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";

const token = newToken();
let l: Listening;
const uncaught: unknown[] = [];
const onUncaught = (e: unknown) => uncaught.push(e);

function raw(port: number, data: string | Buffer, ms = 800): Promise<string> {
  return new Promise((resolve) => {
    const s = netConnect(port, "127.0.0.1");
    let out = "";
    s.on("data", (d) => (out += d.toString("latin1")));
    s.on("error", () => {});
    const parts = typeof data === "string" ? data.split("<<PAUSE>>") : [data];
    s.write(parts[0]!);
    if (parts[1] !== undefined) setTimeout(() => s.write(parts[1]!), 200);
    const t = setTimeout(() => (s.destroy(), resolve(out + " <<TIMEOUT>>")), ms);
    s.on("close", () => (clearTimeout(t), resolve(out + " <<CLOSED>>")));
  });
}

beforeAll(async () => {
  process.on("uncaughtException", onUncaught);
  const dir = mkdtempSync(join(tmpdir(), "r21-"));
  const file = join(dir, "auth.json");
  writeFileSync(file, JSON.stringify({ principals: { a: { roles: ["read", "subscribe"] } }, tokens: { [hashToken(token)]: "a" } }));
  const authenticator = createAuthenticator({ tokenFile: file });
  const server = createServer({
    source: createSimSource({ cpus: 2, exitRate: 0, seed: 1 }),
    authenticator,
    hostAllowed: process.env.HOSTCHECK ? createHostCheck() : undefined,
    maxMessageBytes: 1024,
  });
  l = await listenNode(server, { port: 0 });
});
afterAll(async () => {
  process.off("uncaughtException", onUncaught);
  await l?.close();
});

const P = "/taskwire.v1.TaskStats/GetInfo";
const cases: Record<string, (o: string) => string> = {
  noauth: (o) => `POST ${P} HTTP/1.1\r\nHost: 127.0.0.1\r\n${o}Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
  badtoken: (o) => `POST ${P} HTTP/1.1\r\nHost: 127.0.0.1\r\n${o}Authorization: Bearer nope\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
  good: (o) => `POST ${P} HTTP/1.1\r\nHost: 127.0.0.1\r\n${o}Authorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
  evilhost: (o) => `POST ${P} HTTP/1.1\r\nHost: evil.example\r\n${o}Authorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
  userinfohost: (o) => `POST ${P} HTTP/1.1\r\nHost: localhost:1@evil.example\r\n${o}Authorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
  host127_1: (o) => `POST ${P} HTTP/1.1\r\nHost: 127.1\r\n${o}Authorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
  oversize: (o) => `POST ${P} HTTP/1.1\r\nHost: 127.0.0.1\r\n${o}Authorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n{}`,
  chunkedbig: (o) => `POST ${P} HTTP/1.1\r\nHost: 127.0.0.1\r\n${o}Authorization: Bearer ${token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1000\r\n{"a":"${"x".repeat(4090)}"}\r\n0\r\n\r\n`,
  get: (o) => `GET ${P}?connect=v1&encoding=json&message=%7B%7D HTTP/1.1\r\nHost: 127.0.0.1\r\n${o}Authorization: Bearer ${token}\r\nConnection: close\r\n\r\n`,
  getSub: (o) => `GET /taskwire.v1.TaskStats/SubscribeExits HTTP/1.1\r\nHost: 127.0.0.1\r\n${o}Authorization: Bearer ${token}\r\nConnection: close\r\n\r\n`,
  head: (o) => `HEAD ${P} HTTP/1.1\r\nHost: 127.0.0.1\r\n${o}Authorization: Bearer ${token}\r\nConnection: close\r\n\r\n`,
  options: (o) => `OPTIONS ${P} HTTP/1.1\r\nHost: 127.0.0.1\r\n${o}Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n`,
  trailing: (o) => `POST ${P}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n${o}Authorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
  query: (o) => `POST ${P}?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n${o}Authorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
  badct: (o) => `POST ${P} HTTP/1.1\r\nHost: 127.0.0.1\r\n${o}Authorization: Bearer ${token}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
  grpcweb: (o) => `POST ${P} HTTP/1.1\r\nHost: 127.0.0.1\r\n${o}Authorization: Bearer ${token}\r\nContent-Type: application/grpc-web+proto\r\nContent-Length: 5\r\nConnection: close\r\n\r\n\0\0\0\0\0`,
  grpch1: (o) => `POST ${P} HTTP/1.1\r\nHost: 127.0.0.1\r\n${o}Authorization: Bearer ${token}\r\nContent-Type: application/grpc\r\nContent-Length: 5\r\nConnection: close\r\n\r\n\0\0\0\0\0`,
  expect: (o) => `POST ${P} HTTP/1.1\r\nHost: 127.0.0.1\r\n${o}Authorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n{}`,
  expectbig: (o) => `POST ${P} HTTP/1.1\r\nHost: 127.0.0.1\r\n${o}Authorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 9999999\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`,
  keepalive2: (o) => `GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n<<PAUSE>>POST ${P} HTTP/1.0\r\n${o}Connection: keep-alive\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`,
  http10nohost: (o) => `POST ${P} HTTP/1.0\r\n${o}Authorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`,
};

it("probe", async () => {
  for (const [name, make] of Object.entries(cases)) {
    for (const o of ["", "Origin: http://127.0.0.1\r\n"]) {
      const r = await raw(l.port, make(o));
      const head = r.split("\r\n\r\n", 1)[0]!.split("\r\n").filter((h) => !/^(date|keep-alive|vary):/i.test(h)).join(" | ");
      const body = r.slice(r.indexOf("\r\n\r\n") + 4, r.indexOf("\r\n\r\n") + 4 + 200).replace(/[^\x20-\x7e]/g, ".");
      console.log(`${name.padEnd(12)} ${o ? "ORIGIN" : "direct"}: ${head} || ${body}`);
    }
  }
  console.log("uncaught:", uncaught.map(String));
}, 120_000);
