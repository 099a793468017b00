/**
 * What the runtime adapters do for SubscribeExits streams alone (a body of
 * their own that the server can drop when its client takes nothing; young
 * streams' pacing and send buffer on Node) follows the app's routing. hono
 * routes on the path decoded (`%53ubscribeExits`), and the URL the adapters
 * build normalizes it (`/x/../`): judged by the raw path, a stream asked for
 * at such a path was SubscribeExits to the app but no stream to its adapter,
 * and on Deno a stalled one was never dropped however far past the memory
 * budget its principal went. The same holds for what Node does for client- and
 * bidi-streaming requests alone (server reflection's): no request deadline,
 * since their requests keep coming.
 */
import { type ClientHttp2Session, type ClientHttp2Stream, connect as h2connect, constants as h2 } from "node:http2";
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { holdFetchCalls } from "../src/runtime/_fetch-held.ts";
import { type Listening, listenNode } from "../src/runtime/node.ts";
import { createServer } from "../src/server/server.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { eventually, hasSs, sendBuffers, sleep } from "./helpers.ts";

const PATHS = [
  "/taskwire.v1.TaskStats/SubscribeExits",
  "/taskwire.v1.TaskStats/%53ubscribeExits",
  "/taskwire.v1.TaskStats/Subscribe%45xits",
];

function envelope(json: object): Uint8Array<ArrayBuffer> {
  const body = new TextEncoder().encode(JSON.stringify(json));
  const out = new Uint8Array(5 + body.byteLength);
  new DataView(out.buffer).setUint32(1, body.byteLength);
  out.set(body, 5);
  return out;
}

describe("a Fetch API adapter (Deno's, which reports delivery) drops a stalled stream whatever path routed it", () => {
  for (const path of PATHS) {
    it(`POST ${path}`, async () => {
      const source = createSimSource({ cpus: 2, exitRate: 20_000, seed: 5 });
      const server = createServer({ source, memoryBudget: 1024 * 1024, limits: { leaseMs: 300 }, accessLog: false });
      const serve = holdFetchCalls(server);
      const never = new Promise<void>(() => {}); // Deno's `completed`: a response its client never reads
      const readers: ReadableStreamDefaultReader<Uint8Array>[] = [];
      try {
        for (let i = 0; i < 20; i++) {
          const req = new Request(`http://127.0.0.1${path}`, {
            method: "POST",
            headers: { "content-type": "application/connect+json", "connect-protocol-version": "1" },
            body: envelope({ cpumask: "0-1" }),
          });
          const res = await serve(req, { address: "127.0.0.1" }, never);
          expect(res.status).toBe(200);
          const reader = res.body!.getReader();
          await reader.read(); // the opening message; nothing more is read
          readers.push(reader);
        }
        const stalled = async () => {
          const text = await (await server.fetch(new Request("http://127.0.0.1/metrics"))).text();
          return Number(/^taskwire_stalled_streams_total (\d+)$/m.exec(text)?.[1] ?? NaN);
        };
        await eventually(async () => (await stalled()) > 0, 20_000);
        await sleep(1200); // the sweep's second: every stream it ended with the first is counted
        const ended = await stalled();
        // A dropped stream's body is errored: its runtime reads an error at once, and ends the response.
        let errored = 0;
        for (const reader of readers) {
          const read = reader.read().then(() => false, () => true);
          if (await Promise.race([read, sleep(200).then(() => false)])) errored++;
        }
        expect(ended).toBeGreaterThan(0);
        expect(errored).toBeGreaterThanOrEqual(ended);
      } finally {
        for (const reader of readers) reader.cancel().catch(() => {});
        await server.close();
      }
    }, 40_000);
  }
});

describe.skipIf(!hasSs || process.platform !== "linux")("Node paces a stream as young whatever path routed it", () => {
  let listening: Listening | undefined;
  afterEach(async () => {
    await listening?.close();
    listening = undefined;
  });

  for (const path of [...PATHS, "/x/../taskwire.v1.TaskStats/SubscribeExits"]) {
    it(`POST ${path}: its send buffer is raised once it has read 1 MiB (as a tracked young stream's is)`, async () => {
      const source = createSimSource({ cpus: 2, exitRate: 0, seed: 3 }) as SimSource;
      listening = await listenNode(createServer({ source, accessLog: false }), { port: 0 });
      const body = envelope({ cpumask: "0-1" });
      const socket: Socket = connect(listening.port, "127.0.0.1");
      let received = 0;
      socket.on("data", (d: Buffer) => (received += d.byteLength));
      socket.on("error", () => {});
      socket.write(
        `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1:${listening.port}\r\ncontent-type: application/connect+json\r\n` +
          `connect-protocol-version: 1\r\ncontent-length: ${body.byteLength}\r\n\r\n`,
      );
      socket.write(body);
      const producing = setInterval(() => source.kernel.exitNow(500), 5);
      try {
        await eventually(() => received > 1.5 * 1024 * 1024, 20_000);
        await sleep(200);
        const buffers = [...sendBuffers(listening.port).values()];
        expect(buffers).toEqual([512 * 1024]); // graduated: the default 256 KiB, doubled by the kernel
      } finally {
        clearInterval(producing);
        socket.destroy();
      }
    }, 30_000);
  }
});

describe("Node lifts the request deadline of a reflection stream whatever path routed it", () => {
  const LIMITS = { headerTimeoutMs: 300, requestTimeoutMs: 600 } as const;
  const REFLECTION = "grpc.reflection.v1.ServerReflection";
  // ServerReflectionRequest { list_services: "" } (field 7, an empty string), in binary.
  const LIST_SERVICES = new Uint8Array([0x3a, 0x00]);
  let listening: Listening | undefined;
  afterEach(async () => {
    await listening?.close();
    listening = undefined;
  });

  function framed(message: Uint8Array, flags = 0): Uint8Array {
    const out = new Uint8Array(5 + message.byteLength);
    out[0] = flags;
    new DataView(out.buffer).setUint32(1, message.byteLength);
    out.set(message, 5);
    return out;
  }

  // A server with the short deadlines, and a POST stream to `path` on an h2c session left open (its body still coming).
  async function openPost(
    path: string,
    headers: Record<string, string>,
  ): Promise<[ClientHttp2Session, ClientHttp2Stream]> {
    const source = createSimSource({ cpus: 2, exitRate: 0, seed: 3 });
    listening = await listenNode(createServer({ source, accessLog: false }), { port: 0, ...LIMITS });
    const session = h2connect(listening.url);
    session.on("error", () => {});
    const stream = session.request({ ":method": "POST", ":path": path, ...headers }, { endStream: false });
    stream.on("error", () => {});
    return [session, stream];
  }

  it("while a request routed to a unary method, at such a path, is reset (CANCEL) once its deadline passes", async () => {
    const [session, stream] = await openPost("/x/../taskwire.v1.TaskStats/%47etInfo", {
      "content-type": "application/proto",
    });
    try {
      stream.resume();
      await new Promise<void>((resolve) => stream.once("close", () => resolve()));
      expect(stream.rstCode).toBe(h2.NGHTTP2_CANCEL);
    } finally {
      session.destroy();
    }
  });

  const cases: [string, string][] = [
    ["Connect", `/${REFLECTION}/ServerReflectionInfo`],
    ["Connect", `/${REFLECTION}/%53erverReflectionInfo`],
    ["Connect", `/x/../${REFLECTION}/ServerReflectionInfo`],
    ["gRPC", `/${REFLECTION}/ServerReflectionInfo`],
  ];
  for (const [protocol, path] of cases) {
    it(`${protocol} POST ${path}: it answers past requestTimeoutMs, and is not reset`, async () => {
      const [session, stream] = await openPost(
        path,
        protocol === "gRPC"
          ? { "content-type": "application/grpc", te: "trailers" }
          : { "content-type": "application/connect+proto" },
      );
      try {
        let messages = 0, pending = Buffer.alloc(0);
        stream.on("data", (d: Buffer) => {
          pending = Buffer.concat([pending, d]);
          while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
            if ((pending[0]! & 0x02) === 0) messages++; // not Connect's end-of-stream message
            pending = pending.subarray(5 + pending.readUInt32BE(1));
          }
        });
        stream.write(framed(LIST_SERVICES));
        await eventually(() => messages === 1, 5000);
        await sleep(2 * LIMITS.requestTimeoutMs); // the request is still coming, past its deadline
        expect([stream.closed, stream.destroyed]).toEqual([false, false]);
        stream.write(framed(LIST_SERVICES));
        await eventually(() => messages === 2, 5000);
        stream.end();
        await new Promise<void>((resolve) => stream.once("close", () => resolve()));
        expect(stream.rstCode).toBe(h2.NGHTTP2_NO_ERROR);
      } finally {
        session.destroy();
      }
    }, 15_000);
  }
});
