/** listen(): the best server this runtime has — Node's one port for every protocol, or Deno's / Bun's own. */
import { listenBun, listenDeno } from "./fetch.ts";
import { listenNode, type ListenOptions, type Listening } from "./node.ts";
import type { TaskwireServer } from "../server/server.ts";

/** Binds `server` on this runtime. TLS and real gRPC are Node's; elsewhere they are refused with a TypeError. */
export async function listen(server: TaskwireServer, options: ListenOptions = {}): Promise<Listening> {
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  if (g.Deno === undefined && g.Bun === undefined) return listenNode(server, options);
  if (options.tls !== undefined) throw new TypeError("TLS is served on Node only; put a TLS proxy in front, or run taskwire on Node");
  const o = { host: options.host ?? "127.0.0.1", port: options.port ?? 7878 };
  return g.Deno !== undefined ? listenDeno(server, o) : listenBun(server, o);
}
