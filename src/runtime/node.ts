/**
 * The Node adapter: one TCP port for every protocol. Plaintext HTTP/1.1 and
 * HTTP/2 with prior knowledge (h2c) are told apart by the connection preface
 * (Node's allowHTTP1 works only with TLS, where ALPN decides). On every
 * connection, real gRPC (application/grpc) goes to the server's universal
 * RPC handlers, which can send HTTP/2 trailers; everything else goes to the
 * server's one fetch app through @hono/node-server.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import { universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import { getRequestListener } from "@hono/node-server";
import { createServer as createHttp1Server, type IncomingMessage, type ServerResponse } from "node:http";
import {
  createSecureServer,
  createServer as createHttp2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
} from "node:http2";
import { type AddressInfo, createServer as createTcpServer, type Server, type Socket } from "node:net";
import { isGrpc } from "../server/app.ts";
import type { TaskwireServer } from "../server/server.ts";
import { createSendBufferCap } from "./_send-buffer.ts";

/** Where to listen. */
export interface ListenOptions {
  /** Default 127.0.0.1: taskwire exposes host data, so it is local unless asked. */
  readonly host?: string;
  /** Default 7878; 0 picks a free port. */
  readonly port?: number;
  /** Serve HTTPS (h2 and HTTP/1.1 by ALPN) with this certificate chain and key (PEM). Node only. */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /**
   * Kernel send buffer per connection, bytes (Linux, Node; default 256 KiB, 0
   * for the kernel's autotuning up to 4 MiB). Smaller: a client that stops
   * reading is backpressured (and its overflow reported) sooner; larger:
   * more throughput to distant clients (one buffer per round trip).
   */
  readonly sendBuffer?: number;
}

/** The default per-connection send buffer (see ListenOptions.sendBuffer). */
export const DEFAULT_SEND_BUFFER = 256 * 1024;

/** A listening server. */
export interface Listening {
  readonly url: string;
  readonly port: number;
  readonly host: string;
  /** Stops accepting, ends streams and closes the source. */
  close(): Promise<void>;
}

type NodeRequest = IncomingMessage | Http2ServerRequest;
type NodeResponse = ServerResponse | Http2ServerResponse;

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** Listens on Node; resolves once the port is bound. */
export async function listenNode(server: TaskwireServer, options: ListenOptions = {}): Promise<Listening> {
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? 7878;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`port must be 0-65535, got ${port}`);
  const sendBuffer = options.sendBuffer ?? DEFAULT_SEND_BUFFER;
  if (!Number.isInteger(sendBuffer) || sendBuffer < 0) {
    throw new RangeError(`sendBuffer must be a byte count >= 0, got ${sendBuffer}`);
  }
  const capSendBuffer = await createSendBufferCap(sendBuffer);
  const fetchListener = getRequestListener(server.fetch);
  const grpc = grpcListener(server.rpcHandlers);
  const dispatch = (req: NodeRequest, res: NodeResponse): void => {
    // HTTP/1.1 gRPC falls through to the app, which answers 415: it cannot carry trailers.
    if (req.httpVersionMajor === 2 && isGrpc(req.headers["content-type"])) grpc(req, res);
    else void fetchListener(req, res as never);
  };
  const tcp = options.tls
    ? createSecureServer({ cert: options.tls.cert, key: options.tls.key, allowHTTP1: true }, dispatch)
    : sniffing(createHttp1Server(dispatch), createHttp2Server({}, dispatch));
  const sockets = new Set<Socket>();
  // Per-socket settings go on the raw socket, before any TLS (both servers
  // emit it as "connection"): an error handler from accept on (a reset
  // before the first byte must not become an uncaught 'error'), no Nagle
  // delay (a stream is many small writes; Node's own servers set it on
  // sockets they accept, and these are accepted here), and the send buffer.
  tcp.on("connection", (raw: Socket) => {
    raw.on("error", () => raw.destroy());
    raw.setNoDelay(true);
    capSendBuffer(raw);
  });
  tcp.on(options.tls ? "secureConnection" : "connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(describeListenError(err, host, port));
    tcp.once("error", onError);
    tcp.listen(port, host, () => {
      tcp.off("error", onError);
      const info = tcp.address() as AddressInfo;
      const urlHost = info.family === "IPv6" ? `[${info.address}]` : info.address;
      const scheme = options.tls ? "https" : "http";
      resolve({
        url: `${scheme}://${urlHost}:${info.port}`,
        port: info.port,
        host,
        close: () => closeAll(tcp, sockets, server),
      });
    });
  });
}

// Real gRPC on the universal handlers (as connect-node's adapter does, over the one router's handlers).
function grpcListener(handlers: readonly UniversalHandler[]): (req: NodeRequest, res: NodeResponse) => void {
  const paths = new Map(handlers.map((h) => [h.requestPath, h]));
  return (req, res) => {
    const handler = paths.get(req.url?.split("?", 2)[0] ?? "");
    if (handler === undefined) {
      // A trailers-only gRPC response: UNIMPLEMENTED, as gRPC servers answer unknown methods.
      res.writeHead(200, {
        "content-type": "application/grpc",
        "grpc-status": "12",
        "grpc-message": `no method ${req.url}`,
      });
      res.end();
      return;
    }
    handler(universalRequestFromNodeRequest(req, res, undefined, undefined))
      .then((ures) => universalResponseToNodeResponse(ures, res))
      .catch((reason: unknown) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        console.error(`taskwire: gRPC ${handler.method.name} failed`, reason);
      });
  };
}

// One plaintext port for HTTP/1.1 and h2c: the first bytes decide which
// server gets the socket. The preface may arrive in pieces, so bytes are
// gathered until they match it or cannot.
function sniffing(h1: ReturnType<typeof createHttp1Server>, h2: ReturnType<typeof createHttp2Server>): Server {
  return createTcpServer((socket) => {
    let seen = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, H2_PREFACE.length);
      const isPrefix = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (isPrefix && seen.length < H2_PREFACE.length) return; // could still be h2c: wait for more
      socket.off("data", onData);
      socket.pause();
      socket.unshift(seen);
      if (isPrefix) {
        // The http2 session takes the bytes already buffered on the socket and then reads the handle itself.
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
  });
}

function describeListenError(err: Error, host: string, port: number): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "EADDRINUSE") {
    return new Error(`port ${port} on ${host} is in use; pick another with --port (0 picks a free one)`, {
      cause: err,
    });
  }
  if (code === "EACCES") {
    return new Error(`no permission to listen on ${host}:${port}; use a port above 1023`, { cause: err });
  }
  if (code === "EADDRNOTAVAIL") {
    return new Error(`${host} is not an address of this machine; use --host 127.0.0.1 or 0.0.0.0`, { cause: err });
  }
  return err;
}

async function closeAll(tcp: Server, sockets: Set<Socket>, server: TaskwireServer): Promise<void> {
  await server.close(); // ends every stream (UNAVAILABLE) before the connections go
  await new Promise<void>((resolve) => {
    tcp.close(() => resolve());
    for (const s of sockets) s.destroy();
  });
}
