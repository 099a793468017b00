import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { TaskStats } from "./gen/taskwire/v1/taskstats_pb.ts";

/** A typed client of the TaskStats service: getPid, getTgid, register, deregister, subscribeExits, getInfo. */
export type TaskwireClient = Client<typeof TaskStats>;

/** Options of createTaskwireClient. */
export interface TaskwireClientOptions {
  /** A transport of your own (e.g. connect-node's for HTTP/2, or gRPC-Web); baseUrl is then ignored. */
  transport?: Transport;
  /** Protobuf binary (default, compact) or JSON (readable in devtools). */
  useBinaryFormat?: boolean;
  /** Headers sent with every call (e.g. authorization). */
  headers?: Record<string, string>;
  /** A fetch implementation (default: the global one). */
  fetch?: typeof globalThis.fetch;
  /** Extra Connect interceptors. */
  interceptors?: Interceptor[];
}

/**
 * Creates a client for the taskwire server at `baseUrl` (e.g.
 * "http://127.0.0.1:7878"). The default transport is the Connect protocol
 * over the runtime's fetch, which works on Node, Deno, Bun and browsers.
 */
export function createTaskwireClient(baseUrl: string, options: TaskwireClientOptions = {}): TaskwireClient {
  return createClient(TaskStats, options.transport ?? createTransport(baseUrl, options));
}

function createTransport(baseUrl: string, options: TaskwireClientOptions): Transport {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new TypeError(`baseUrl "${baseUrl}" is not a URL; pass e.g. "http://127.0.0.1:7878"`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new TypeError(`baseUrl must be http: or https:, got ${url.protocol}`);
  const headers = options.headers;
  const interceptors: Interceptor[] = [...(options.interceptors ?? [])];
  if (headers !== undefined) {
    interceptors.unshift((next) => (req) => {
      for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
      return next(req);
    });
  }
  return createConnectTransport({
    baseUrl: url.href.replace(/\/$/, ""),
    useBinaryFormat: options.useBinaryFormat ?? true,
    interceptors,
    ...(options.fetch !== undefined && { fetch: options.fetch }),
  });
}
