/**
 * listen(): the one place that asks which runtime this is, and hands the
 * server to that runtime's adapter (node.ts, deno.ts, bun.ts). Nothing else
 * in the server checks for a runtime.
 */
import type { TaskwireServer } from "../server/server.ts";
import type { Listening, ListenOptions } from "./node.ts";
import { logText, taskwireLogger } from "../log/logger.ts";

export { ListenError } from "./_acceptors.ts";

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
    "connection limits and timeouts (--max-connections*, --*-timeout-ms, --h2-*) and --heap-headroom-mb are applied on Node; " +
      "this runtime's server uses its own (message size, auth, calls under way and the other per-principal limits apply everywhere)",
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

/** The default room kept in V8's old generation: two of its 16 MB semi-spaces (heap-headroom.ts). */
export const DEFAULT_HEAP_HEADROOM_BYTES = 32 * 1024 * 1024;

/** What keepHeapHeadroom did: its undo, and why it did nothing when it did nothing. */
export interface HeapHeadroom {
  readonly undo: () => void;
  readonly applied: boolean;
  readonly why?: string;
}

/**
 * Node: keeps `bytes` of room in V8's old generation above the live heap
 * (heap-headroom.ts); returns the undo. It does nothing at 0, on Deno and
 * Bun (their runtimes size their heaps), and when Node was started with its
 * own --heap-growing-percent (the operator's setting wins).
 */
export async function keepHeapHeadroom(bytes: number): Promise<HeapHeadroom> {
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  const none = (why: string): HeapHeadroom => ({ undo: () => {}, applied: false, why });
  if (bytes === 0) return none("0: V8's own heap sizing");
  if (g.Deno !== undefined || g.Bun !== undefined) return none("applied on Node only");
  const given = [...process.execArgv, ...(process.env["NODE_OPTIONS"] ?? "").split(/\s+/)];
  if (given.some((a) => /^--heap[-_]growing[-_]percent\b/.test(a))) {
    return none("node was started with --heap-growing-percent, which stays in force");
  }
  return { undo: (await import("./heap-headroom.ts")).keepHeapHeadroom(bytes), applied: true };
}
