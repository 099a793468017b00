/** Response compression is offered only when the server is given it (`--compress`); off by default. */
import { compressionGzip, createGrpcTransport } from "@connectrpc/connect-node";
import { createTaskwireClient } from "@taskwire/client";
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
