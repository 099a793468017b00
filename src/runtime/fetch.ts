/**
 * Deno and Bun: the runtime's own server over the fetch app (Connect and
 * gRPC-Web through hono; real gRPC, which needs HTTP trailers, stays on
 * Node). Bun.serve's default idle timeout would cut quiet streams, so it is off.
 */
import type { ListenOptions, Listening } from "./node.ts";
import type { TaskwireServer } from "../server/server.ts";

interface DenoServe {
  serve(o: { port: number; hostname: string; onListen?: (a: { port: number }) => void }, h: (r: Request) => Response | Promise<Response>): {
    addr: { port: number };
    shutdown(): Promise<void>;
  };
}

interface BunServe {
  serve(o: { port: number; hostname: string; idleTimeout: number; fetch: (r: Request) => Response | Promise<Response> }): { port: number; stop(force?: boolean): Promise<void> | void };
}

function url(host: string, port: number): string {
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** Listens with Deno.serve. */
export function listenDeno(server: TaskwireServer, o: Required<Pick<ListenOptions, "host" | "port">>): Listening {
  const deno = (globalThis as unknown as { Deno: DenoServe }).Deno;
  const srv = deno.serve({ port: o.port, hostname: o.host, onListen: () => {} }, (req) => server.fetch(req));
  return { url: url(o.host, srv.addr.port), port: srv.addr.port, host: o.host, close: async () => { await server.close(); await srv.shutdown(); } };
}

/** Listens with Bun.serve. */
export function listenBun(server: TaskwireServer, o: Required<Pick<ListenOptions, "host" | "port">>): Listening {
  const bun = (globalThis as unknown as { Bun: BunServe }).Bun;
  const srv = bun.serve({ port: o.port, hostname: o.host, idleTimeout: 0, fetch: (req) => server.fetch(req) });
  return { url: url(o.host, srv.port), port: srv.port, host: o.host, close: async () => { await server.close(); await srv.stop(true); } };
}
