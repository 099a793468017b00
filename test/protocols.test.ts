/** One port, every protocol on Node: Connect and gRPC-Web over HTTP/1.1 and h2c, real gRPC over h2c, hono's routes on both. */
import { connect as h2connect } from "node:http2";
import { Code, ConnectError, createTaskwireClient, watchExits } from "@taskwire/client";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { loopbackCertificate, type Running, startServer } from "./helpers.ts";

let running: Running;
let source: SimSource;
beforeAll(async () => {
  // No exits of its own (exitRate 0): a pid read from it stays alive until the test makes exits with exitNow().
  // At 500 exits/s the task taken from livePids() could exit before GetPid reached the server under load.
  source = createSimSource({ cpus: 8, exitRate: 0, seed: 12 }) as SimSource;
  running = await startServer(source);
});
afterAll(() => running.close());

const transports = {
  "gRPC over h2c": () => createGrpcTransport({ baseUrl: running.url }),
  "Connect over h2c": () => createConnectTransport({ baseUrl: running.url, httpVersion: "2" }),
  "Connect over HTTP/1.1": () => createConnectTransport({ baseUrl: running.url, httpVersion: "1.1" }),
  "gRPC-Web over HTTP/1.1": () => createGrpcWebTransport({ baseUrl: running.url, httpVersion: "1.1" }),
  "gRPC-Web over h2c": () => createGrpcWebTransport({ baseUrl: running.url, httpVersion: "2" }),
};

describe.each(Object.entries(transports))("%s on the one port", (_name, transport) => {
  it("serves every method, streams, and carries error codes", async () => {
    const client = createTaskwireClient(running.url, { transport: transport() });
    expect((await client.getInfo({})).source).toBe("sim");
    const pid = source.kernel.livePids()[0]!;
    expect((await client.getPid({ pid })).stats?.acPid).toBe(pid);
    const err = await client.register({ cpumask: "0-4096" }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toContain("possible CPUs are 0-7");
    const nf = await client.getPid({ pid: 4_000_000 }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(nf?.code).toBe(Code.NotFound);
    const reg = await client.register({ cpumask: "0-7" });
    source.kernel.exitNow(20); // queued for the registered listener (every CPU watched: one record per exit)
    let n = 0;
    for await (const ev of watchExits(client, { listenerId: reg.listenerId })) {
      expect(ev.event.case).toBe("exit");
      if (++n === 20) break;
    }
    expect((await client.deregister({ listenerId: reg.listenerId, cpumask: "0-7" })).cpumask).toBe("");
  });
});

describe("non-RPC routes", () => {
  it("/healthz answers over HTTP/1.1 and over h2c (hono behind the gRPC adapter)", async () => {
    expect(await (await fetch(`${running.url}/healthz`)).json()).toMatchObject({ status: "ok", source: "sim" });
    const session = h2connect(running.url);
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const req = session.request({ ":path": "/healthz" });
        let data = "";
        req.on("data", (d: Buffer) => (data += d.toString()));
        req.on("end", () => resolve(data));
        req.on("error", reject);
      });
      expect(JSON.parse(body)).toMatchObject({ status: "ok" });
    } finally {
      session.close();
    }
  });

  it("gRPC over HTTP/1.1 is refused clearly (415), since gRPC needs HTTP/2 trailers", async () => {
    const res = await fetch(`${running.url}/taskwire.v1.TaskStats/GetInfo`, {
      method: "POST",
      headers: { "content-type": "application/grpc" },
      body: new Uint8Array(5),
    });
    expect(res.status).toBe(415);
  });
});

describe("TLS: h2 and HTTP/1.1 by ALPN on one port", () => {
  let tls: { listening: import("../src/runtime/node.ts").Listening; ca: string } | undefined;
  beforeAll(async () => {
    const made = loopbackCertificate();
    const cert = made.cert;
    const { listenNode } = await import("../src/runtime/node.ts");
    const { createServer } = await import("../src/server/server.ts");
    const listening = await listenNode(createServer({ source: createSimSource({ cpus: 8, exitRate: 300, seed: 2 }) }), {
      port: 0,
      tls: { cert, key: made.key },
    });
    tls = { listening, ca: cert };
  });
  afterAll(() => tls?.listening.close());

  it.each([
    ["gRPC over h2", () => createGrpcTransport({ baseUrl: tls!.listening.url, nodeOptions: { ca: tls!.ca } })],
    [
      "Connect over h2",
      () => createConnectTransport({ baseUrl: tls!.listening.url, httpVersion: "2", nodeOptions: { ca: tls!.ca } }),
    ],
    [
      "Connect over HTTP/1.1",
      () => createConnectTransport({ baseUrl: tls!.listening.url, httpVersion: "1.1", nodeOptions: { ca: tls!.ca } }),
    ],
    [
      "gRPC-Web over HTTP/1.1",
      () => createGrpcWebTransport({ baseUrl: tls!.listening.url, httpVersion: "1.1", nodeOptions: { ca: tls!.ca } }),
    ],
  ])("%s: unary and streaming", async (_name, transport) => {
    expect(tls!.listening.url).toMatch(/^https:/);
    const client = createTaskwireClient(tls!.listening.url, { transport: transport() });
    expect((await client.getInfo({})).source).toBe("sim");
    let n = 0;
    for await (const ev of watchExits(client, { cpumask: "0-7", resume: false })) {
      expect(ev.event.case).toBe("exit");
      if (++n === 5) break;
    }
  });
});
