/**
 * The SDK's real gRPC (`protocol: "grpc"`, HTTP/2 without TLS) against a
 * server that does not take HTTP/2 (an HTTP/1.1-only server, as Bun's is, or
 * a proxy): each call fails with an error saying what to use instead, and
 * nothing else happens. connect-node took its listener off the session
 * before Node emitted the session's error there, which then went uncaught
 * and ended the calling process (test/runtimes.test.ts met it against Bun).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createTaskwireClient } from "@taskwire/client";
import { afterEach, describe, expect, it } from "vitest";
import { sleep } from "./helpers.ts";

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server === undefined ? r(undefined) : server.close(r));
  server = undefined;
});

describe("gRPC from the SDK to a server that does not take HTTP/2", () => {
  it("fails each call with what to use instead, and throws nothing uncaught", async () => {
    server = createServer((req, res) => {
      req.resume();
      res.writeHead(200).end("HTTP/1.1 only");
    });
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.on("uncaughtException", onUncaught);
    try {
      const refused = /did not take gRPC's HTTP\/2 \(a protocol error\): .*use protocol "connect"/;
      for (let i = 0; i < 3; i++) {
        const client = createTaskwireClient(url, { protocol: "grpc", retry: false });
        await expect(client.getInfo({})).rejects.toThrow(refused);
        await expect(client.subscribeExits({ cpumask: "0" })[Symbol.asyncIterator]().next()).rejects.toThrow(refused);
      }
      await sleep(300); // the session's own error comes after the call's
      expect(uncaught.map(String)).toEqual([]);
    } finally {
      process.off("uncaughtException", onUncaught);
    }
  });
});
