/**
 * connect-node's HTTP/1.1 transports (Connect, gRPC-Web) as its
 * createConnectTransport and createGrpcWebTransport make them, over a client
 * that writes no empty chunk of a request body.
 *
 * A unary Connect request of a message with every field at its default
 * (getInfo({}), getPid({ pid: 0 })) has an empty body, which connect-node
 * writes as one empty chunk. Deno's node:tls fails a write of an empty
 * buffer (Buffer.alloc(0), new Uint8Array(0): no backing store, for which
 * its TLS handle's write returns -1) with "write EPERM" (Deno 2.9.6; its
 * node:net, Node and Bun write nothing), so such a call over https://
 * failed on Deno with "[internal] write EPERM". An empty chunk adds no byte
 * to the request on any runtime, so leaving it out changes nothing else.
 */
import type { Transport } from "@connectrpc/connect";
import { type UniversalClientFn, validateReadWriteMaxBytes } from "@connectrpc/connect/protocol";
import { createTransport as createConnect } from "@connectrpc/connect/protocol-connect";
import { createTransport as createGrpcWeb } from "@connectrpc/connect/protocol-grpc-web";
import { compressionBrotli, compressionGzip, createNodeHttpClient } from "@connectrpc/connect-node";
import type { TransportSettings } from "./client.ts";

type NodeOptions = NonNullable<
  Extract<Parameters<typeof createNodeHttpClient>[0], { httpVersion: "1.1" }>["nodeOptions"]
>;

/** A Connect or gRPC-Web transport over Node's http/https for `s`, with connect-node's defaults. */
export function createNodeH1Transport(
  s: Pick<TransportSettings, "baseUrl" | "useBinaryFormat" | "interceptors"> & { protocol: "connect" | "grpc-web" },
  nodeOptions: NodeOptions | undefined,
): Transport {
  const inner = createNodeHttpClient({ httpVersion: "1.1", ...(nodeOptions !== undefined && { nodeOptions }) });
  const httpClient: UniversalClientFn = (req) =>
    inner(req.body === undefined ? req : { ...req, body: withoutEmptyChunks(req.body) });
  const options = {
    baseUrl: s.baseUrl,
    useBinaryFormat: s.useBinaryFormat,
    interceptors: s.interceptors,
    httpClient,
    // What connect-node's validateNodeTransportOptions fills in when not given.
    sendCompression: null,
    acceptCompression: [compressionGzip, compressionBrotli],
    ...validateReadWriteMaxBytes(undefined, undefined, undefined),
  };
  return s.protocol === "connect" ? createConnect(options) : createGrpcWeb(options);
}

async function* withoutEmptyChunks(body: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  for await (const chunk of body) if (chunk.byteLength > 0) yield chunk;
}
