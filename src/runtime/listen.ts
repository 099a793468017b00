/**
 * listen(): the one place that asks which runtime this is, and hands the
 * server to that runtime's adapter (node.ts, deno.ts, bun.ts). Nothing else
 * in the server checks for a runtime.
 */
import type { TaskwireServer } from "../server/server.ts";
import type { Listening, ListenOptions } from "./node.ts";
import { logText, taskwireLogger } from "../log/logger.ts";

/** Binds `server` on this runtime. TLS and real gRPC are Node's; elsewhere TLS is refused with a TypeError. */
export async function listen(server: TaskwireServer, options: ListenOptions = {}): Promise<Listening> {
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  if (g.Deno === undefined && g.Bun === undefined) return (await import("./node.ts")).listenNode(server, options);
  if (options.tls !== undefined) {
    throw new TypeError("TLS is served on Node only; put a TLS proxy in front, or run taskwire on Node");
  }
  const o = { host: options.host ?? "127.0.0.1", port: options.port ?? 7878 };
  // Said once at start, so nobody assumes a flag protects a server it does not reach.
  logText(
    options.logger ?? taskwireLogger(),
    "info",
    "connection limits and timeouts (--max-connections, --*-timeout-ms, --h2-*) are applied on Node; " +
      `this runtime's server uses its own (message size, auth and per-principal limits apply everywhere)`,
  );
  if (g.Deno !== undefined) return (await import("./deno.ts")).listenDeno(server, o);
  return (await import("./bun.ts")).listenBun(server, o);
}

/** The runtime serving, for logs: "node 20.20.0", "deno 2.9.6", "bun 1.4.5". */
export function runtimeLabel(): string {
  const g = globalThis as { Deno?: { version: { deno: string } }; Bun?: { version: string } };
  if (g.Deno !== undefined) return `deno ${g.Deno.version.deno}`;
  if (g.Bun !== undefined) return `bun ${g.Bun.version}`;
  return `node ${process.versions.node}`;
}
