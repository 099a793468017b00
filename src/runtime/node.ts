/**
 * Binds a taskwire server to one plaintext TCP port on Node, for every
 * protocol: HTTP/1.1 goes to the hono app (Connect and gRPC-Web through the
 * Fetch API, plus /healthz), HTTP/2 with prior knowledge (h2c) goes to
 * connect-node's adapter (gRPC, gRPC-Web and Connect, which can send HTTP
 * trailers), whose fallback is the hono app. Node's allowHTTP1 works only with
 * TLS (ALPN), so the connection preface decides: "PRI * HTTP/2.0" is h2c.
 * With `tls`, one HTTP/2 server with allowHTTP1 takes both, chosen by ALPN.
 */
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { getRequestListener } from "@hono/node-server";
import { createServer as createHttp1Server } from "node:http";
import { createSecureServer, createServer as createHttp2Server } from "node:http2";
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from "node:net";
import type { ConnectRouter } from "@connectrpc/connect";
import { TaskStats } from "../gen/taskwire/v1/taskstats_pb.ts";
import { reflectionRoutes } from "../rpc/reflection.ts";
import { createSendBufferCap } from "./_send-buffer.ts";
import type { TaskwireServer } from "../server/server.ts";

/** Where to listen. */
export interface ListenOptions {
  /** Default 127.0.0.1: taskwire exposes host data, so it is local unless asked. */
  readonly host?: string;
  /** Default 7878; 0 picks a free port. */
  readonly port?: number;
  /** Serve HTTPS (h2 and HTTP/1.1 by ALPN) with this certificate chain and key (PEM). */
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

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0");

/** Listens on Node; resolves once the port is bound. */
export async function listenNode(server: TaskwireServer, options: ListenOptions = {}): Promise<Listening> {
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? 7878;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`port must be 0-65535, got ${port}`);
  const sendBuffer = options.sendBuffer ?? DEFAULT_SEND_BUFFER;
  if (!Number.isInteger(sendBuffer) || sendBuffer < 0) throw new RangeError(`sendBuffer must be a byte count >= 0, got ${sendBuffer}`);
  const capSendBuffer = await createSendBufferCap(sendBuffer);
  const hono = getRequestListener(server.fetch);
  const reflection = reflectionRoutes([TaskStats]);
  const routes = (router: ConnectRouter) => {
    server.routes(router);
    reflection(router); // bidirectional streaming: HTTP/2 only
  };
  // connect-node would offer gzip and brotli by default; taskwire offers what the server was given (none by default).
  const rpc = connectNodeAdapter({ routes, fallback: hono as never, acceptCompression: [...server.compression] });
  const tcp = options.tls
    ? createSecureServer({ cert: options.tls.cert, key: options.tls.key, allowHTTP1: true }, rpc)
    : sniffing(createHttp1Server(hono), createHttp2Server({}, rpc));
  const sockets = new Set<Socket>();
  // Per-socket TCP settings go on the raw socket, before any TLS (both servers
  // emit it as "connection"). No Nagle delay, as Node's http servers set on
  // sockets they accept themselves (these are accepted here and handed over):
  // a stream is many small writes. Loopback benchmarks showed no difference.
  tcp.on("connection", (raw: Socket) => {
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
      resolve({ url: `${scheme}://${urlHost}:${info.port}`, port: info.port, host, close: () => closeAll(tcp, sockets, server) });
    });
  });
}

// One plaintext port for HTTP/1.1 and h2c: the first bytes decide which server gets the socket.
function sniffing(h1: ReturnType<typeof createHttp1Server>, h2: ReturnType<typeof createHttp2Server>): Server {
  return createTcpServer((socket) => {
    socket.once("data", (first: Buffer) => {
      socket.pause();
      socket.unshift(first);
      if (first.subarray(0, H2_PREFACE.length).equals(H2_PREFACE)) {
        // The http2 session takes the bytes already buffered on the socket and then reads the handle itself.
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    });
  });
}

function describeListenError(err: Error, host: string, port: number): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "EADDRINUSE") return new Error(`port ${port} on ${host} is in use; pick another with --port (0 picks a free one)`, { cause: err });
  if (code === "EACCES") return new Error(`no permission to listen on ${host}:${port}; use a port above 1023`, { cause: err });
  if (code === "EADDRNOTAVAIL") return new Error(`${host} is not an address of this machine; use --host 127.0.0.1 or 0.0.0.0`, { cause: err });
  return err;
}

async function closeAll(tcp: Server, sockets: Set<Socket>, server: TaskwireServer): Promise<void> {
  await server.close(); // ends every stream (UNAVAILABLE) before the connections go
  await new Promise<void>((resolve) => {
    tcp.close(() => resolve());
    for (const s of sockets) s.destroy();
  });
}
