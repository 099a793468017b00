/** Binds a taskwire server to a TCP port on Node (HTTP/1.1). */
import { serve, type ServerType } from "@hono/node-server";
import type { AddressInfo } from "node:net";
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

/** Listens on Node; resolves once the port is bound. */
export function listenNode(server: TaskwireServer, options: ListenOptions = {}): Promise<Listening> {
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? 7878;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`port must be 0-65535, got ${port}`);
  return new Promise((resolve, reject) => {
    let http: ServerType;
    const onError = (err: Error) => reject(describeListenError(err, host, port));
    http = serve({ fetch: server.fetch, hostname: host, port }, (info: AddressInfo) => {
      http.off("error", onError);
      const urlHost = info.family === "IPv6" ? `[${info.address}]` : info.address;
      resolve({ url: `http://${urlHost}:${info.port}`, port: info.port, host, close: () => closeAll(http, server) });
    });
    http.once("error", onError);
  });
}

function describeListenError(err: Error, host: string, port: number): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "EADDRINUSE") return new Error(`port ${port} on ${host} is in use; pick another with --port (0 picks a free one)`, { cause: err });
  if (code === "EACCES") return new Error(`no permission to listen on ${host}:${port}; use a port above 1023`, { cause: err });
  if (code === "EADDRNOTAVAIL") return new Error(`${host} is not an address of this machine; use --host 127.0.0.1 or 0.0.0.0`, { cause: err });
  return err;
}

async function closeAll(http: ServerType, server: TaskwireServer): Promise<void> {
  await server.close();
  await new Promise<void>((resolve) => {
    http.close(() => resolve());
    (http as { closeAllConnections?: () => void }).closeAllConnections?.();
  });
}
