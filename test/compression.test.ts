/** Response compression is offered only when the server is given it (`--compress`); off by default. */
import { compressionGzip, createGrpcTransport } from "@connectrpc/connect-node";
import { createTaskwireClient } from "@taskwire/client";
import { gzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { type Listening, listenNode } from "../src/runtime/node.ts";
import { createServer } from "../src/server/server.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";

let listening: Listening | undefined;
afterEach(() => listening?.close());

async function encodingSeen(compression: boolean): Promise<string | null> {
  const server = createServer({
    source: createSimSource({ cpus: 2, exitRate: 0 }),
    ...(compression && { compression: [compressionGzip] }),
  });
  listening = await listenNode(server, { port: 0 });
  // A stock client that accepts gzip (connect-node's default).
  const client = createTaskwireClient(listening.url, { transport: createGrpcTransport({ baseUrl: listening.url }) });
  let encoding: string | null = null;
  await client.getInfo({}, { onHeader: (h) => (encoding = h.get("grpc-encoding")) });
  return encoding;
}

describe("response compression", () => {
  it("is not offered by default, even to a client that accepts gzip", async () => {
    expect(await encodingSeen(false)).toBeNull();
  });

  it("is used when the server is given it", async () => {
    expect(await encodingSeen(true)).toBe("gzip");
  });
});

describe("compressed requests", () => {
  // A Connect unary request in JSON, gzipped; the answer's status and error.
  async function gzipped(
    compression: boolean,
    body: string,
  ): Promise<{ status: number; code: string; message: string }> {
    const server = createServer({
      source: createSimSource({ cpus: 2, exitRate: 0 }),
      ...(compression && { compression: [compressionGzip] }),
    });
    listening = await listenNode(server, { port: 0 });
    const res = await fetch(`${listening.url}/taskwire.v1.TaskStats/GetInfo`, {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
      body: gzipSync(body),
    });
    return { status: res.status, ...(await res.json()) as { code: string; message: string } };
  }

  it("on a server without --compress: refused, saying to send them uncompressed and what the operator can do", async () => {
    const answer = await gzipped(false, "{}");
    expect(answer.code).toBe("unimplemented");
    expect(answer.message).toBe(
      'request compression "gzip" is not accepted: this server takes uncompressed requests (its operator can offer ' +
        "gzip and br with serve --compress); send the request uncompressed",
    );
  });

  it("past --max-message-bytes once decompressed: refused, naming the flag", async () => {
    const answer = await gzipped(true, JSON.stringify({ pad: " ".repeat(200_000) }));
    expect(answer.code).toBe("resource_exhausted");
    expect(answer.message).toMatch(
      /^a request message of (more than )?\d+ bytes \(after any decompression\) is larger than this server takes, 65536 bytes \(serve --max-message-bytes\); send a smaller one$/,
    );
  });
});
