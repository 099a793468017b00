/**
 * The SDK's Node entry on Deno and Bun (they take it by the package's `node` condition) with `tls: { ca }`, against
 * a Node server whose certificate a private CA signed, for both the name and the address it is reached by.
 */
import { Code } from "@taskwire/client";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Listening, listenNode } from "../src/runtime/node.ts";
import { createServer } from "../src/server/server.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { createTestCa } from "./test-ca.ts";

const root = new URL("..", import.meta.url).pathname;
let caFile: string;
let tls: Listening;

beforeAll(async () => {
  const ca = createTestCa("ca", { prefix: "taskwire-sdk-node-entry-" });
  const s = ca.sign("s", { cn: "localhost", san: "DNS:localhost,IP:127.0.0.1" });
  caFile = ca.certFile;
  tls = await listenNode(createServer({ source: createSimSource() }), {
    host: "127.0.0.1",
    port: 0,
    tls: { cert: s.cert + ca.cert, key: s.key },
  });
}, 30_000);
afterAll(async () => {
  await tls?.close();
});

interface Outcome {
  url: string;
  protocol: string;
  call: string;
  code: number | "ok";
  message: string;
}

describe.each([["deno", ["run", "--allow-all"]], ["bun", []]] as const)(
  "the SDK's Node entry on %s with tls: { ca }",
  (runtime, args) => {
    // Deno's node:tls failed a write of an empty buffer with EPERM, and connect-node wrote an empty request body as
    // one: every unary Connect call with an empty request failed with "[internal] write EPERM" (_node-h1.ts).
    it(
      "an empty request, a refused one and a stream, over Connect, gRPC-Web and gRPC, to a name and an address",
      async () => {
        const urls = [tls.url, tls.url.replace("127.0.0.1", "localhost")];
        const { stdout } = await promisify(execFile)(
          `${root}node_modules/.bin/${runtime}`,
          [...args, `${root}test/runtimes/sdk-node-tls.ts`, caFile, ...urls],
          { cwd: root, timeout: 60_000 },
        );
        const out = stdout.trim().split("\n").map((l) => JSON.parse(l) as Outcome);
        expect(out).toHaveLength(2 * 3 * 3);
        const wrong = out.filter((o) => o.code !== (o.call === "refused" ? Code.InvalidArgument : "ok"));
        expect(wrong).toEqual([]);
        for (const o of out.filter((o) => o.call === "refused")) expect(o.message).toMatch(/^pid is 0; /);
      },
      90_000,
    );
  },
);
