/**
 * The Deno adapter: Deno.serve over the server's fetch app (Connect,
 * gRPC-Web, /healthz, /ui). Real gRPC, which needs HTTP/2 trailers, stays on Node.
 */
import type { TaskwireServer } from "../server/server.ts";
import type { Listening } from "./node.ts";
import { internalError } from "../server/app.ts";
import { droppedQuietly, holdFetchCalls } from "./_fetch-held.ts";

interface DenoServe {
  serve(
    o: {
      port: number;
      hostname: string;
      onListen?: (a: { port: number }) => void;
      onError?: (err: unknown) => Response;
    },
    h: (r: Request, info: { remoteAddr: { hostname?: string }; completed?: Promise<void> }) => Promise<Response>,
  ): { addr: { port: number }; shutdown(): Promise<void> };
}

/** "http://host:port", with brackets for IPv6. */
export function httpUrl(host: string, port: number): string {
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** Listens with Deno.serve. */
export function listenDeno(server: TaskwireServer, o: { host: string; port: number }): Listening {
  const deno = (globalThis as unknown as { Deno: DenoServe }).Deno;
  const serve = holdFetchCalls(server);
  // The peer's address: anonymous callers are told apart by it (their limits and listeners), and the access log shows
  // it. `completed` settles once the response is delivered or cannot be (Deno 1.45+; before, the body is watched).
  const srv = deno.serve(
    // A stream's response the server dropped (a stalled stream, see _fetch-held.ts) is no failure to log. Deno.serve
    // offers no way to close its connection: it stays open, with what the kernel still holds for it, until its
    // client leaves (SECURITY.md).
    { port: o.port, hostname: o.host, onListen: () => {}, onError: (err) => droppedQuietly(err) ?? internalError(err) },
    (req, info) => serve(req, { address: info.remoteAddr.hostname ?? "" }, info.completed),
  );
  return {
    url: httpUrl(o.host, srv.addr.port),
    port: srv.addr.port,
    host: o.host,
    close: async () => {
      await server.close();
      await srv.shutdown();
    },
  };
}
