/**
 * Binds a taskwire server to one plaintext TCP port on Node, for every
 * protocol: HTTP/1.1 goes to the hono app (Connect and gRPC-Web through the
 * Fetch API, plus /healthz), HTTP/2 with prior knowledge (h2c) goes to
 * connect-node's adapter (gRPC, gRPC-Web and Connect, which can send HTTP
 * trailers), whose fallback is the hono app. Node's allowHTTP1 works only with
 * TLS (ALPN), so the connection preface decides: "PRI * HTTP/2.0" is h2c.
 */
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { getRequestListener } from "@hono/node-server";
import { createServer as createHttp1Server } from "node:http";
import { createServer as createHttp2Server } from "node:http2";
import { createServer as createTcpServer, type AddressInfo, type Socket } from "node:net";
import type { ConnectRouter } from "@connectrpc/connect";
import { TaskStats } from "../gen/taskwire/v1/taskstats_pb.ts";
import { reflectionRoutes } from "./reflection.ts";
import type { TaskwireServer } from "./server.ts";

/** Where to listen. */
export interface ListenOptions {
  /** Default 127.0.0.1: taskwire exposes host data, so it is local unless asked. */
  readonly host?: string;
  /** Default 7878; 0 picks a free port. */
  readonly port?: number;
}

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
export function listenNode(server: TaskwireServer, options: ListenOptions = {}): Promise<Listening> {
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? 7878;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`port must be 0-65535, got ${port}`);
  const hono = getRequestListener(server.fetch);
  const h1 = createHttp1Server(hono);
  const reflection = reflectionRoutes([TaskStats]);
  const routes = (router: ConnectRouter) => {
    server.routes(router);
    reflection(router); // bidirectional streaming: HTTP/2 only
  };
  const h2 = createHttp2Server({}, connectNodeAdapter({ routes, fallback: hono as never }));
  const sockets = new Set<Socket>();
  const tcp = createTcpServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
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
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(describeListenError(err, host, port));
    tcp.once("error", onError);
    tcp.listen(port, host, () => {
      tcp.off("error", onError);
      const info = tcp.address() as AddressInfo;
      const urlHost = info.family === "IPv6" ? `[${info.address}]` : info.address;
      resolve({ url: `http://${urlHost}:${info.port}`, port: info.port, host, close: () => closeAll(tcp, sockets, server) });
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

async function closeAll(tcp: ReturnType<typeof createTcpServer>, sockets: Set<Socket>, server: TaskwireServer): Promise<void> {
  await server.close(); // ends every stream (UNAVAILABLE) before the connections go
  await new Promise<void>((resolve) => {
    tcp.close(() => resolve());
    for (const s of sockets) s.destroy();
  });
}
