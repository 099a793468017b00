/**
 * The Bun adapter: Bun.serve over the server's fetch app (Connect, gRPC-Web,
 * /healthz, /ui). Bun.serve's default idle timeout (10 s) would cut quiet
 * streams between heartbeats, so it is off. Real gRPC stays on Node.
 */
import type { TaskwireServer } from "../server/server.ts";
import { httpUrl } from "./deno.ts";
import type { Listening } from "./node.ts";
import { holdFetchCalls } from "./_fetch-held.ts";

interface BunServe {
  serve(o: {
    port: number;
    hostname: string;
    idleTimeout: number;
    fetch: (r: Request, server: BunServer) => Promise<Response>;
  }): BunServer;
}

interface BunServer {
  readonly port: number;
  stop(force?: boolean): Promise<void> | void;
  requestIP(r: Request): { address: string } | null;
}

/** Listens with Bun.serve. */
export function listenBun(server: TaskwireServer, o: { host: string; port: number }): Listening {
  const bun = (globalThis as unknown as { Bun: BunServe }).Bun;
  const serve = holdFetchCalls(server);
  // The peer's address: anonymous callers are told apart by it (their limits and listeners), and the access log shows
  // it. Bun reports no response's delivery: its count ends when Bun has read the body's end (or the client left).
  const srv = bun.serve({
    port: o.port,
    hostname: o.host,
    idleTimeout: 0,
    fetch: (req, s) => serve(req, { address: s.requestIP(req)?.address ?? "" }, undefined),
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
