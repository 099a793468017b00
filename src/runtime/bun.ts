/**
 * The Bun adapter: Bun.serve over the server's fetch app (Connect, gRPC-Web,
 * /healthz, /ui). Bun.serve's default idle timeout (10 s) would cut quiet
 * streams between heartbeats, so it is off. Real gRPC stays on Node.
 */
import type { TaskwireServer } from "../server/server.ts";
import { httpUrl } from "./deno.ts";
import type { Listening } from "./node.ts";
import { internalError } from "../server/app.ts";
import { droppedQuietly, holdFetchCalls } from "./_fetch-held.ts";

interface BunServe {
  serve(o: {
    port: number;
    hostname: string;
    idleTimeout: number;
    development: boolean;
    fetch: (r: Request, server: BunServer) => Promise<Response>;
    error: (err: Error) => Response;
  }): BunServer;
}

interface BunServer {
  readonly port: number;
  /** Sets one request's connection's idle timeout, seconds (absent in older Bun: a dropped stream's connection then stays, as on Deno). */
  timeout?(r: Request, seconds: number): void;
  stop(force?: boolean): Promise<void> | void;
  requestIP(r: Request): { address: string } | null;
}

/** Listens with Bun.serve. */
export function listenBun(server: TaskwireServer, o: { host: string; port: number }): Listening {
  const bun = (globalThis as unknown as { Bun: BunServe }).Bun;
  const serve = holdFetchCalls(server);
  // The peer's address: anonymous callers are told apart by it (their limits and listeners), and the access log shows
  // it. Bun reports no response's delivery: its count ends when Bun has taken the body's last chunk (or the client left).
  const srv = bun.serve({
    port: o.port,
    hostname: o.host,
    idleTimeout: 0,
    // Bun's development mode (its default unless NODE_ENV=production) answers an uncaught error with a page of the
    // server's source and paths.
    development: false,
    // A stream's response the server dropped (a stalled stream: its client takes nothing) is closed with its
    // connection a second later: erroring its body alone left the connection open, its kernel buffers full.
    fetch: (req, s) => serve(req, { address: s.requestIP(req)?.address ?? "" }, undefined, () => s.timeout?.(req, 1)),
    error: (err) => droppedQuietly(err) ?? internalError(err),
  });
  return {
    url: httpUrl(o.host, srv.port),
    port: srv.port,
    host: o.host,
    close: async () => {
      await server.close();
      await srv.stop(true);
    },
  };
}
