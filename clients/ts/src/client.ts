import type { DescMethodServerStreaming, DescService } from "@bufbuild/protobuf";
import { type Empty, EmptySchema } from "@bufbuild/protobuf/wkt";
import {
  type CallOptions,
  type Client,
  Code,
  ConnectError,
  createClient,
  createContextKey,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { retryAfterMs, toTaskwireError } from "./errors.ts";
import { type Deadline, explainDeadline } from "./_deadlines.ts";
import { sleep } from "./_sleep.ts";
import { hideUserinfo } from "./_redact.ts";
import { checkTlsOptions, type TlsInput } from "./_tls-options.ts";
import { explainRefusedGrpc, explainTlsFailures, type TlsAdvice } from "./_transport-failures.ts";
import { decodeFastFromFields } from "./_fast-decode.ts";
import { checkRequest } from "./_request-checks.ts";
import {
  type SubscribeExitsResponse,
  SubscribeExitsResponseSchema,
  TaskStats,
} from "./gen/taskwire/v1/taskstats_pb.ts";

/**
 * A typed client of the TaskStats service: getPid, getTgid, register,
 * deregister, subscribeExits, getInfo. Its methods throw the server's errors
 * typed (errors.ts); a call whose own `timeoutMs` passed, or a given
 * transport's `defaultTimeoutMs` when the call passed none, throws a
 * ConnectError with Code.DeadlineExceeded that says so. A request with a
 * numeric field its protobuf type cannot hold (`getPid({ pid: -1 })`) is
 * not sent: the call throws a RangeError (a TypeError for a value that is
 * no number) naming the method, the field, its range and the value.
 */
export type TaskwireClient = Client<typeof TaskStats>;

/** Options of createTaskwireClient. */
export interface TaskwireClientOptions {
  /**
   * A transport of your own (e.g. connect-node's for HTTP/2, or gRPC-Web); baseUrl is then ignored. Its
   * `defaultTimeoutMs`, if set, bounds every call and stream that passes no `timeoutMs`.
   */
  transport?: Transport;
  /**
   * The protocol of the SDK's own transport: "connect" (default; HTTP/1.1 or
   * fetch), "grpc-web", or "grpc" (HTTP/2; Node only, the package's `node`
   * export). Ignored when `transport` is given.
   */
  protocol?: "connect" | "grpc-web" | "grpc";
  /** Protobuf binary (default, compact, and decoded fastest) or JSON (readable in devtools). gRPC is binary only. */
  useBinaryFormat?: boolean;
  /** Headers sent with every call. */
  headers?: Record<string, string>;
  /**
   * A bearer token for a server with authentication on (sent as
   * `Authorization: Bearer <token>`). The CLI reads it from --token or
   * TASKWIRE_TOKEN.
   */
  token?: string;
  /**
   * TLS settings for https: URLs on Node (the package's `node` export): a CA
   * to trust for the server, and a client certificate and key for a server
   * that authenticates clients by certificate (--tls-client-ca). Each is PEM
   * text, the file's contents (`readFileSync(file, "utf8")`, or its Buffer,
   * or an array of them), not its path: anything else (a DER file's bytes
   * too) is a TypeError.
   * Over fetch (the default export: browsers, and Deno or Bun importing
   * it), the runtime's own trust store and certificates apply: Deno takes a
   * CA's file from DENO_CERT (or `deno run --cert`), Bun from
   * NODE_EXTRA_CA_CERTS.
   */
  tls?: TlsInput;
  /** A fetch implementation (fetch-based transports only; default: the global one). */
  fetch?: typeof globalThis.fetch;
  /** Extra Connect interceptors. */
  interceptors?: Interceptor[];
  /**
   * Retries of a unary call the server refused for the moment: a call rate or
   * its calls under way (LimitExceededError with `retryAfterMs`). Such a
   * refusal changed nothing on the server, so every method, Register
   * included, is sent again as it was. Default: up to 3 retries; the first
   * after the server's `retryAfterMs`, each next one twice as long, each
   * plus up to as much again at random (so that refused callers do not come
   * back together), and none longer than `maxDelayMs` (5,000); all within
   * the call's `timeoutMs` and `signal`. `false`: none; the refusal is
   * thrown at once.
   */
  retry?: false | { maxRetries?: number; maxDelayMs?: number };
}

/** The retry policy of unary calls (TaskwireClientOptions.retry), resolved. */
interface RetryPolicy {
  readonly maxRetries: number;
  readonly maxDelayMs: number;
}

/** What a runtime's default transport is built from. */
export interface TransportSettings {
  baseUrl: string;
  protocol: "connect" | "grpc-web" | "grpc";
  useBinaryFormat: boolean;
  interceptors: Interceptor[];
  fetch?: typeof globalThis.fetch;
  tls?: TaskwireClientOptions["tls"];
}

/**
 * Builds createTaskwireClient over a runtime's default transport (connect-web's fetch, or connect-node's on Node);
 * `tlsAdvice` says where that transport takes a CA to trust, for its TLS failures' words (`caGiven`: tls.ca was).
 */
export function clientFactory(
  makeTransport: (s: TransportSettings) => Transport,
  tlsAdvice: (caGiven: boolean) => TlsAdvice,
) {
  return (baseUrl: string, options: TaskwireClientOptions = {}): TaskwireClient => {
    const retry = retryPolicy(options.retry);
    if (options.transport !== undefined) {
      return withTypedErrors(createClient(TaskStats, options.transport), { retry, transport: "given" });
    }
    const s = settings(baseUrl, options, tlsAdvice);
    const transport = makeTransport(s);
    const client = withTypedErrors(createClient(TaskStats, transport), { retry, transport: "own" });
    return s.useBinaryFormat ? { ...client, subscribeExits: fastSubscribeExits(transport) } : client;
  };
}

type SubscribeExits = TaskwireClient["subscribeExits"];

/**
 * SubscribeExits decoded by the SDK's schema-driven decoder (_fast-decode.ts)
 * instead of protobuf-es reflection, which costs ~20 µs per 71-field record
 * and capped a client near 40k events/s. The transport reads each message
 * as google.protobuf.Empty, which keeps every field as raw bytes; the
 * decoder builds the same SubscribeExitsResponse fromBinary() would. Binary
 * format only: it is the transport's wire format this works on, so clients
 * given a transport of their own (whose format the SDK cannot see) and JSON
 * clients use the ordinary path.
 */
function fastSubscribeExits(transport: Transport): SubscribeExits {
  const method = TaskStats.method.subscribeExits;
  const raw: DescMethodServerStreaming<typeof method.input, typeof EmptySchema> = { ...method, output: EmptySchema };
  const service = { ...TaskStats, methods: [raw], method: { subscribeExits: raw } } as unknown as DescService;
  const rawClient = createClient(service, transport) as unknown as {
    subscribeExits(input: Parameters<SubscribeExits>[0], options?: CallOptions): AsyncIterable<Empty>;
  };
  return (input, options) =>
    endsWithIteration(
      (o) => {
        checkRequest(method.localName, method.input, input);
        return decodeStream(rawClient.subscribeExits(input, o), { timeoutMs: o.timeoutMs, transport: "own" });
      },
      options,
    );
}

/**
 * connect-es ends a server stream's HTTP request only through its signal:
 * leaving a `for await` early (`break`, `return`, a throw: the iterator's
 * return()) left the stream open on the server, its listener and queue
 * held, until the connection closed. So each stream gets a signal of its
 * own (joined with the caller's), aborted as its iteration ends, however
 * it ends; after a stream that ended by itself, that does nothing.
 */
async function* endsWithIteration<T>(
  open: (options: CallOptions) => AsyncIterable<T>,
  options: CallOptions = {},
): AsyncGenerator<T> {
  const ctl = new AbortController();
  const signal = options.signal === undefined ? ctl.signal : AbortSignal.any([options.signal, ctl.signal]);
  try {
    yield* open({ ...options, signal });
  } finally {
    ctl.abort();
  }
}

// One generator both decodes and types errors (one async hop per message fewer than two layers).
async function* decodeStream(
  messages: AsyncIterable<Empty>,
  deadline: Deadline,
): AsyncGenerator<SubscribeExitsResponse> {
  try {
    for await (const m of messages) yield decodeFastFromFields(SubscribeExitsResponseSchema, m.$unknown ?? []);
  } catch (err) {
    throw explainDeadline(toTaskwireError(err), deadline, "stream");
  }
}

type AnyMethod = (...args: unknown[]) => unknown;

/** How a client's calls go: its retry policy, and whose transport carries them (what a deadline error names). */
interface CallPolicy {
  readonly retry: RetryPolicy;
  readonly transport: Deadline["transport"];
}

/**
 * The same client, throwing typed errors (errors.ts) from every method, the
 * stream's iteration included; unary calls refused for the moment are retried.
 */
function withTypedErrors(client: TaskwireClient, policy: CallPolicy): TaskwireClient {
  const { transport } = policy;
  const methods = client as unknown as Record<string, AnyMethod>;
  const typed: Record<string, AnyMethod> = {};
  for (const m of TaskStats.methods) {
    const call = methods[m.localName]!;
    // A request a field of which its type cannot hold is thrown before it is sent (as the stream's first error).
    const check = (input: unknown) => checkRequest(m.localName, m.input, input);
    typed[m.localName] = m.methodKind === "unary"
      ? async (input, options) => {
        check(input);
        return await retried((o) => call(input, o), policy, options as CallOptions | undefined);
      }
      : (input, options) =>
        endsWithIteration(
          (o) => {
            check(input);
            return rethrowTyped(call(input, o) as AsyncIterable<unknown>, { timeoutMs: o.timeoutMs, transport });
          },
          options as CallOptions | undefined,
        );
  }
  return typed as unknown as TaskwireClient;
}

const NO_RETRY: RetryPolicy = { maxRetries: 0, maxDelayMs: 0 };

/**
 * A context value (CallOptions.contextValues) that sends one call once,
 * whatever the client's retry policy: for a caller with a retry loop of its
 * own (watchExits), whose retries would otherwise multiply the client's.
 */
export const SINGLE_ATTEMPT = createContextKey(false, { description: "taskwire: one attempt, no retry" });

function retryPolicy(retry: TaskwireClientOptions["retry"]): RetryPolicy {
  if (retry === false) return NO_RETRY;
  const maxRetries = retry?.maxRetries ?? 3, maxDelayMs = retry?.maxDelayMs ?? 5000;
  if (!Number.isInteger(maxRetries) || maxRetries < 0 || maxRetries > 100) {
    throw new RangeError(`retry.maxRetries must be an integer 0-100, got ${maxRetries}`);
  }
  if (!Number.isFinite(maxDelayMs) || maxDelayMs < 0) {
    throw new RangeError(`retry.maxDelayMs must be a number of milliseconds >= 0, got ${maxDelayMs}`);
  }
  return { maxRetries, maxDelayMs };
}

/**
 * One unary call, sent again after each refusal for the moment (retryAfterMs)
 * while the policy allows and the wait fits in the call's timeoutMs; errors
 * thrown typed. The signal aborts a wait as it aborts a call.
 */
async function retried(call: (o: CallOptions) => unknown, policy: CallPolicy, options: CallOptions = {}) {
  const { transport } = policy;
  const retry = options.contextValues?.get(SINGLE_ATTEMPT) === true ? NO_RETRY : policy.retry;
  // connect-es arms no deadline for a timeout of 0 or less: only a positive one is shared out between attempts.
  const deadline = options.timeoutMs === undefined || options.timeoutMs <= 0
    ? Infinity
    : Date.now() + options.timeoutMs;
  for (let attempt = 0;; attempt++) {
    const left = deadline - Date.now();
    try {
      return await call(left === Infinity ? options : { ...options, timeoutMs: Math.max(1, left) });
    } catch (err) {
      // The caller's timeoutMs, not this attempt's share of it: the deadline the caller set is what passed.
      const typed = explainDeadline(toTaskwireError(err), { timeoutMs: options.timeoutMs, transport }, "call");
      const after = retryAfterMs(typed);
      if (after === undefined || attempt >= retry.maxRetries) throw typed;
      const wait = Math.min(retry.maxDelayMs, after * 2 ** attempt * (1 + Math.random()));
      if (Date.now() + wait >= deadline) throw typed;
      await sleep(wait, options.signal);
      if (options.signal?.aborted) throw ConnectError.from(options.signal.reason, Code.Canceled);
    }
  }
}

async function* rethrowTyped<T>(stream: AsyncIterable<T>, deadline: Deadline): AsyncGenerator<T> {
  try {
    yield* stream;
  } catch (err) {
    throw explainDeadline(toTaskwireError(err), deadline, "stream");
  }
}

// A token is sent in a header: characters a header cannot carry are a mistake to report now, not a failed call later.
function bearer(token: string): string {
  if (typeof token !== "string" || !/^[\x21-\x7e]{1,512}$/.test(token)) {
    throw new TypeError(
      "token must be 1-512 printable ASCII characters without spaces (as `taskwire token` prints it)",
    );
  }
  return `Bearer ${token}`;
}

function settings(
  baseUrl: string,
  options: TaskwireClientOptions,
  tlsAdvice: (caGiven: boolean) => TlsAdvice,
): TransportSettings {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new TypeError(`baseUrl "${baseUrl}" is not a URL; pass e.g. "http://127.0.0.1:7878"`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    // "localhost:7878" parses as a URL of scheme "localhost:": say what to write, not only what the scheme is. A user
    // and password before an @ are not repeated (ftp://user:secret@host, or user:secret@host parsed as scheme user:).
    const shown = hideUserinfo(baseUrl);
    const rest = shown.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "") || "127.0.0.1:7878";
    throw new TypeError(
      `baseUrl "${shown}" is not an http:// or https:// URL (its scheme is ${url.protocol}); write it whole, e.g. "http://${rest}"`,
    );
  }
  checkTlsOptions(options.tls);
  const headers = { ...options.headers, ...(options.token !== undefined && { authorization: bearer(options.token) }) };
  const interceptors: Interceptor[] = [...(options.interceptors ?? [])];
  if (Object.keys(headers).length > 0) {
    interceptors.unshift((next) => (req) => {
      for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
      return next(req);
    });
  }
  const protocol = options.protocol ?? "connect";
  if (!["connect", "grpc-web", "grpc"].includes(protocol)) {
    throw new TypeError(`protocol "${protocol}" is unknown; use "connect", "grpc-web" or "grpc"`);
  }
  if (protocol === "grpc" && options.useBinaryFormat === false) {
    throw new TypeError('gRPC is binary only; drop useBinaryFormat: false or use protocol "connect"');
  }
  if (protocol === "grpc") interceptors.unshift(explainRefusedGrpc);
  const href = url.href.replace(/\/$/, "");
  interceptors.unshift(explainTlsFailures(hideUserinfo(href), tlsAdvice(options.tls?.ca !== undefined)));
  return {
    baseUrl: href,
    protocol,
    useBinaryFormat: options.useBinaryFormat ?? true,
    interceptors,
    ...(options.fetch !== undefined && { fetch: options.fetch }),
    ...(options.tls !== undefined && { tls: options.tls }),
  };
}
