/**
 * The ceiling for a stream over this stack: a bare server (hono on Node,
 * HTTP/1.1) answering SubscribeExits with pre-encoded Connect envelopes of the
 * same messages taskwire would send, as fast as the client drains them. No
 * listener, queue or encoding work at all.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { createServer as createHttp2Server } from "node:http2";
import type { AddressInfo } from "node:net";
import { SubscribeExitsResponseSchema } from "../src/gen/taskwire/v1/taskstats_pb.ts";
import { toExitEvent } from "../src/rpc/convert.ts";
import type { ExitRecord } from "../src/kernel/exit-record.ts";

/** A Connect envelope around a message (flags 0). */
export function envelope(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + bytes.length);
  new DataView(out.buffer).setUint32(1, bytes.length); // flags 0, big-endian length
  out.set(bytes, 5);
  return out;
}

/** Starts the ceiling server over `records`; resolves with its URL and a closer. */
export async function startCeiling(
  records: ExitRecord[],
  batch: number,
): Promise<{ url: string; close: () => Promise<void> }> {
  const events = records.slice(0, batch).map((record, i) => toExitEvent({ kind: "exit", seq: i + 1, record }));
  const opening = envelope(
    toBinary(
      SubscribeExitsResponseSchema,
      create(SubscribeExitsResponseSchema, { listenerId: "ceiling", cpumask: "0-7" }),
    ),
  );
  const full = envelope(toBinary(SubscribeExitsResponseSchema, create(SubscribeExitsResponseSchema, { events })));
  const app = new Hono();
  app.post("/taskwire.v1.TaskStats/SubscribeExits", () => {
    let first = true;
    const body = new ReadableStream<Uint8Array>({
      pull(ctl) {
        ctl.enqueue(first ? opening : full);
        first = false;
      },
    });
    return new Response(body, { headers: { "content-type": "application/connect+proto" } });
  });
  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, () => resolve(s));
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      }),
  };
}

/** The same ceiling for gRPC over h2c: a bare HTTP/2 server writing pre-encoded gRPC frames, as fast as the client drains. */
export async function startGrpcCeiling(
  records: ExitRecord[],
  batch: number,
): Promise<{ url: string; close: () => Promise<void> }> {
  const events = records.slice(0, batch).map((record, i) => toExitEvent({ kind: "exit", seq: i + 1, record }));
  const opening = envelope(
    toBinary(
      SubscribeExitsResponseSchema,
      create(SubscribeExitsResponseSchema, { listenerId: "ceiling", cpumask: "0-7" }),
    ),
  );
  const full = envelope(toBinary(SubscribeExitsResponseSchema, create(SubscribeExitsResponseSchema, { events })));
  const server = createHttp2Server((req, res) => {
    if (req.url !== "/taskwire.v1.TaskStats/SubscribeExits") {
      res.writeHead(404).end();
      return;
    }
    req.resume();
    res.writeHead(200, { "content-type": "application/grpc" });
    let open = true;
    res.on("close", () => (open = false));
    const pump = () => {
      while (open && res.write(full)) { /* until the transport pushes back */ }
      if (open) res.once("drain", pump);
    };
    res.write(opening);
    pump();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise<void>((r) => server.close(() => r())) };
}
