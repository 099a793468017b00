import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { toTaskwireError } from "./errors.ts";
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
  /** A fetch implementation (fetch-based transports only; default: the global one). */
  fetch?: typeof globalThis.fetch;
  /** Extra Connect interceptors. */
  interceptors?: Interceptor[];
}

/** What a runtime's default transport is built from. */
export interface TransportSettings {
  baseUrl: string;
  useBinaryFormat: boolean;
  interceptors: Interceptor[];
  fetch?: typeof globalThis.fetch;
}

/** Builds createTaskwireClient over a runtime's default transport (connect-web's fetch, or connect-node's on Node). */
export function clientFactory(makeTransport: (s: TransportSettings) => Transport) {
  return (baseUrl: string, options: TaskwireClientOptions = {}): TaskwireClient =>
    withTypedErrors(createClient(TaskStats, options.transport ?? makeTransport(settings(baseUrl, options))));
}

type AnyMethod = (...args: unknown[]) => unknown;

/** The same client, throwing typed errors (errors.ts) from every method, the stream's iteration included. */
function withTypedErrors(client: TaskwireClient): TaskwireClient {
  const methods = client as unknown as Record<string, AnyMethod>;
  const typed: Record<string, AnyMethod> = {};
  for (const m of TaskStats.methods) {
    const call = methods[m.localName]!;
    typed[m.localName] = m.methodKind === "unary"
      ? async (...args) => {
        try {
          return await call(...args);
        } catch (err) {
          throw toTaskwireError(err);
        }
      }
      : (...args) => rethrowTyped(call(...args) as AsyncIterable<unknown>);
  }
  return typed as unknown as TaskwireClient;
}

async function* rethrowTyped<T>(stream: AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* stream;
  } catch (err) {
    throw toTaskwireError(err);
  }
}

function settings(baseUrl: string, options: TaskwireClientOptions): TransportSettings {
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
  return {
    baseUrl: url.href.replace(/\/$/, ""),
    useBinaryFormat: options.useBinaryFormat ?? true,
    interceptors,
    ...(options.fetch !== undefined && { fetch: options.fetch }),
  };
}
