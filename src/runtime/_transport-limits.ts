/**
 * Transport limits for the Node adapter: how many connections, how long each
 * may take to say what it wants or sit idle, and what one HTTP/2 connection
 * may hold. Node's defaults leave a plaintext port open to silent or
 * half-sent connections (its HTTP/1.1 header and request timeouts run only on
 * a server that listens itself, and taskwire's hands its HTTP/1.1 server
 * sockets from the preface sniffer), HTTP/2 sessions that never open a
 * stream, and unlimited streams per connection.
 */
import { readdirSync, readFileSync } from "node:fs";
import type { Server as Http1Server, ServerOptions as Http1ServerOptions } from "node:http";
import {
  constants as h2,
  type Http2SecureServer,
  type Http2Server,
  type Http2Session,
  type ServerHttp2Stream,
} from "node:http2";
import type { Socket } from "node:net";
import type { Logger } from "@logtape/logtape";
import { addressBucket } from "../core/admission.ts";
import type { ConnectionLimit } from "../server/metrics.ts";
import { logText, taskwireLogger } from "../log/logger.ts";

/** What any one client may take of the server at the connection and HTTP level. */
export interface TransportLimits {
  /**
   * Connections open at once (TCP, counted before TLS); more are closed as
   * they are accepted. Each holds a file descriptor: at listen it is lowered
   * to what the process's descriptor limit (`ulimit -n`) leaves free.
   */
  readonly maxConnections: number;
  /**
   * Connections open at once from one remote address (IPv6: one /64), so
   * that one host cannot hold every connection and lock everyone else out;
   * more from it are closed as they are accepted. Loopback is not counted:
   * local clients are on the host already, and a proxy in front of the server
   * on the same host brings every remote client in from loopback.
   */
  readonly maxConnectionsPerAddress: number;
  /**
   * Milliseconds a connection has to send its first bytes, finish its TLS
   * handshake, and send each HTTP/1.1 request's headers.
   */
  readonly headerTimeoutMs: number;
  /**
   * Milliseconds an HTTP/1.1 request (headers and body), or an HTTP/2 unary
   * or server-streaming request, has to arrive whole. The response is not
   * bounded by it: a SubscribeExits stream may last for hours.
   */
  readonly requestTimeoutMs: number;
  /**
   * Milliseconds a connection with nothing in flight (HTTP/1.1 between
   * requests, HTTP/2 with no open stream) stays open.
   */
  readonly idleTimeoutMs: number;
  /** HTTP/2 streams open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused. */
  readonly h2MaxStreams: number;
  /**
   * HTTP/2 streams one connection may have reset (by either side, before they ended) per second, in bursts of
   * twice that; past it the connection is closed with GOAWAY ENHANCE_YOUR_CALM (rapid reset, _reset-guard.ts).
   */
  readonly h2MaxResetsPerSecond: number;
  /**
   * HTTP/2 streams all the connections from one address (loopback as one, an IPv6 /64 as one) may have reset
   * per second together, in bursts of twice that; past it the connection whose reset found none left is closed
   * the same way, and the address's new connections are refused for 2 s (the bucket's time to fill up again).
   * Without it, more connections each under h2MaxResetsPerSecond add up to a stall.
   */
  readonly h2MaxResetsPerSecondPerAddress: number;
  /**
   * HTTP/2 memory per connection, MiB (Node's maxSessionMemory: header
   * tables, frames queued in nghttp2); past it new streams are refused.
   */
  readonly h2SessionMemoryMb: number;
  /** Request header bytes: HTTP/1.1 headers (431 past it), HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE. */
  readonly maxHeaderBytes: number;
  /**
   * New connections accepted (through as many descriptors, see _acceptors.ts)
   * and their first requests served per event-loop turn (pacing, see
   * _pacer.ts): during a connection storm, connections already serving go
   * first, and the new ones are taken up a batch per turn.
   */
  readonly acceptsPerTurn: number;
}

/** The defaults. */
export const DEFAULT_TRANSPORT_LIMITS: Readonly<TransportLimits> = Object.freeze({
  // An HTTP/1.1 stream holds a connection: room for a thousand or so of them besides unary traffic.
  maxConnections: 2048,
  // A quarter: one host cannot take more, and a few hundred streams of one client still fit.
  maxConnectionsPerAddress: 512,
  // Far longer than any real client takes to send a preface, a TLS handshake or a few hundred header bytes.
  headerTimeoutMs: 10_000,
  // taskwire's requests are one small message; 30 s covers a slow link, not a trickle.
  requestTimeoutMs: 30_000,
  // Long enough for clients to reuse a connection between calls (undici keeps them 4 s, gRPC longer).
  idleTimeoutMs: 30_000,
  // RFC 9113 asks for no fewer than 100; Node's default is unlimited.
  h2MaxStreams: 100,
  // A client cancelling a few calls or watches a second is far under it; 200 reset streams (the burst) cost ~20-60 ms.
  h2MaxResetsPerSecond: 100,
  // Four connections' worth: a proxy or NAT in front of many clients shares it. 18,000 resets a second from 200
  // loopback connections stalled the event loop for 3.9 s without it.
  h2MaxResetsPerSecondPerAddress: 400,
  // Node's default, now explicit.
  h2SessionMemoryMb: 10,
  // Node's HTTP/1.1 default; room for bearer tokens (HTTP/2's own default is 64 KiB).
  maxHeaderBytes: 16 * 1024,
  // A refused or unary request costs ~0.3 ms to handle: a batch adds at most ~2.5 ms to a turn. 16 a turn let an
  // established subscriber keep 88-91% of its rate while 1,000 others connected on a fast host, but 72-82% on a
  // slower one (storms of 4.5-7 s, no steal); 8 kept 85-88% there, the storm 1-2 s longer (BENCHMARKS.md).
  acceptsPerTurn: 8,
});

/** `partial` over DEFAULT_TRANSPORT_LIMITS, checked (RangeError names the option). */
export function transportLimits(partial: Partial<TransportLimits>): TransportLimits {
  const l: TransportLimits = { ...DEFAULT_TRANSPORT_LIMITS };
  for (const key of Object.keys(DEFAULT_TRANSPORT_LIMITS) as (keyof TransportLimits)[]) {
    const v = partial[key] ?? DEFAULT_TRANSPORT_LIMITS[key];
    if (!Number.isInteger(v) || v < 1 || v > 2 ** 31 - 1) {
      throw new RangeError(`${key} must be a whole number from 1 to ${2 ** 31 - 1}, got ${v}`);
    }
    (l as Record<keyof TransportLimits, number>)[key] = v;
  }
  if (l.headerTimeoutMs > l.requestTimeoutMs) {
    throw new RangeError(
      `headerTimeoutMs (${l.headerTimeoutMs}) must not exceed requestTimeoutMs (${l.requestTimeoutMs}): headers are part of the request`,
    );
  }
  return l;
}

// Node checks HTTP/1.1 header and request deadlines on an interval, not per
// connection: a connection is closed up to one interval after its deadline.
function checkingInterval(l: TransportLimits): number {
  return Math.min(30_000, Math.max(50, Math.floor(Math.min(l.headerTimeoutMs, l.requestTimeoutMs) / 4)));
}

/** Options for node:http's createServer. */
export function http1Options(l: TransportLimits): Http1ServerOptions {
  return {
    maxHeaderSize: l.maxHeaderBytes,
    headersTimeout: l.headerTimeoutMs,
    // Node's requestTimeout runs from a request's first byte until it is received whole (llhttp's message
    // complete); a response, however long it streams, is not bounded by it.
    requestTimeout: l.requestTimeoutMs,
    keepAliveTimeout: l.idleTimeoutMs,
    connectionsCheckingInterval: checkingInterval(l),
  };
}

/**
 * Starts Node's HTTP/1.1 header and request deadline checks on a server that
 * never listens itself (the front server hands it sockets): Node starts them
 * on 'listening', and a socket is only tracked if they run before it
 * arrives. Returns what stops them (closing the server).
 */
export function trackHttp1Deadlines(h1: Http1Server | Http2SecureServer): () => void {
  h1.emit("listening");
  return () => void h1.close();
}

/** HTTP/1.1 limits on a TLS server with allowHTTP1, which takes them as properties. */
export function applyHttp1Limits(server: Http2SecureServer, l: TransportLimits): void {
  const o = http1Options(l);
  Object.assign(server, {
    maxHeaderSize: o.maxHeaderSize,
    headersTimeout: o.headersTimeout,
    requestTimeout: o.requestTimeout,
    keepAliveTimeout: o.keepAliveTimeout,
    connectionsCheckingInterval: o.connectionsCheckingInterval,
  });
}

/** Options for node:http2's createServer and createSecureServer. */
export function http2Options(
  l: TransportLimits,
): { settings: { maxConcurrentStreams: number; maxHeaderListSize: number }; maxSessionMemory: number } {
  return {
    settings: { maxConcurrentStreams: l.h2MaxStreams, maxHeaderListSize: l.maxHeaderBytes },
    maxSessionMemory: l.h2SessionMemoryMb,
  };
}

// Each HTTP/2 stream's request deadline, until its request is in whole, or its routing lifts it (allowLongRequest).
const requestDeadlines = new WeakMap<ServerHttp2Stream, NodeJS.Timeout>();

/**
 * Ends HTTP/2 sessions with no open stream after idleTimeoutMs (`endIdle`:
 * _h2-end.ts, a GOAWAY, then the socket), and resets a stream whose request has not arrived whole
 * within requestTimeoutMs, unless its routing lifted that deadline first
 * (allowLongRequest: client and bidi streams, which legitimately keep
 * sending).
 */
export function limitHttp2Sessions(
  server: Http2Server | Http2SecureServer,
  l: TransportLimits,
  endIdle: (session: Http2Session) => void,
): void {
  server.on("session", (session: Http2Session) => {
    let open = 0;
    let idle: NodeJS.Timeout | undefined;
    const arm = (): void => {
      idle = setTimeout(() => endIdle(session), l.idleTimeoutMs).unref();
    };
    arm();
    session.on("stream", (stream: ServerHttp2Stream) => {
      open++;
      clearTimeout(idle);
      const request = setTimeout(() => {
        // remoteClose: the client has sent END_STREAM, so the whole request is in.
        if (!stream.destroyed && stream.state.remoteClose !== 1) stream.close(h2.NGHTTP2_CANCEL);
      }, l.requestTimeoutMs).unref();
      requestDeadlines.set(stream, request);
      stream.once("close", () => {
        clearTimeout(request);
        if (--open === 0 && !session.closed && !session.destroyed) arm();
      });
    });
    session.once("close", () => clearTimeout(idle));
    pingWhileOpen(session, l.idleTimeoutMs, () => open);
  });
}

// Node 20 never lets go of a session that nghttp2 ended for a protocol error (DATA on a closed stream, a PRIORITY
// frame on its own stream, a CONTINUATION without HEADERS, an oversize header block) while streams of it were still
// unanswered: nghttp2 sends its GOAWAY and wants nothing more, Node stops reading (the client's leaving is never
// seen), and the streams answered after that never close, so the session never goes idle. 100 clients sending such
// a frame after a few GetInfo streams for 2.5 s: ~600 connections kept their descriptors for good (CLOSE-WAIT);
// after a client's GOAWAY (NO_ERROR) then such a frame, sessions kept 894 calls counted under way for good, and
// their principal was refused (429) from then on. Node's session timeout ("timeout") did not fire for all of them.
// So every `everyMs` a session with streams open is sent a PING, and destroyed if it has no answer within as long
// again (a client that reads its connection answers at once, even with its streams' windows full; one whose process
// is stalled has the idle timeout's time, 30 s by default, longer than gRPC's 20 s keepalive timeout).
function pingWhileOpen(session: Http2Session, everyMs: number, open: () => number): void {
  const timer = setInterval(() => {
    if (session.destroyed) return clearInterval(timer);
    if (open() === 0) return;
    const dead = setTimeout(() => session.destroyed || session.destroy(), everyMs).unref();
    session.ping(() => clearTimeout(dead));
  }, everyMs).unref();
  session.once("close", () => clearInterval(timer));
}

/**
 * Lifts requestTimeoutMs from an HTTP/2 stream routed to a client- or
 * bidi-streaming method (server reflection), whose request keeps coming for
 * as long as the call lasts. Decided by the routing that found the method
 * (the app's decodes and normalizes the path), never by the raw :path: one
 * percent-encoded or with dot segments reaches the same method.
 */
export function allowLongRequest(stream: ServerHttp2Stream): void {
  clearTimeout(requestDeadlines.get(stream));
  requestDeadlines.delete(stream);
}

/** The descriptors this process may open (ulimit -n) and has open; undefined where /proc cannot tell. */
export function descriptors(): { limit: number; open: number } | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    if (m === null) return undefined;
    return { limit: Number(m[1]), open: readdirSync("/proc/self/fd").length };
  } catch {
    return undefined;
  }
}

/**
 * maxConnections lowered, where needed, to what the descriptor limit leaves
 * free: past it accept() fails, and the server can open nothing else either
 * (files, netlink sockets), which is how a flood of idle connections used to
 * take /healthz down for everyone. `copies`: copies of the listening socket
 * the server is yet to open (_acceptors.ts). `fds`: descriptors()'s reading,
 * which the caller has already made for the copies. Linux only (it reads
 * /proc); elsewhere `requested` as is.
 */
export function connectionBudget(
  requested: number,
  o: { fds: ReturnType<typeof descriptors>; copies?: number; logger?: Logger },
): number {
  const { fds, copies = 0, logger = taskwireLogger() } = o;
  if (fds === undefined) return requested;
  // Headroom for what the server opens later: a netlink socket per newly watched CPU, TLS files, the event loop.
  const budget = Math.max(1, fds.limit - fds.open - 128 - copies);
  if (requested <= budget) return requested;
  const held = copies > 0 ? ` and ${copies} more for copies of the listening socket (--accepts-per-turn)` : "";
  logText(
    logger,
    "warning",
    `--max-connections ${requested} lowered to ${budget}: the process may open ${fds.limit} descriptors (ulimit -n) and has ${fds.open} open${held}; raise the limit to allow more`,
  );
  return budget;
}

/**
 * Caps connections: `max` open in all (across every descriptor front() accepts on: its copies of one socket
 * each count their own, so Node's per-server maxConnections would not do), and `perAddress` from one remote
 * address bucket (an IPv4 address, an IPv6 /64; loopback not counted: a proxy on the host must cap its own
 * clients). Both are checked before either counts, so a connection one refuses takes no place in the other
 * (a refused socket's "close" comes a turn later: counted meanwhile, a burst from one address refused by its
 * cap filled the global one and shut everyone else out). A connection another limit `refuses` (the HTTP/2 reset
 * guard's, which counts and says so itself) is refused before either. Says (at most every 10 s) when it refuses
 * some.
 */
export function createConnectionCaps(
  o: {
    max: number;
    perAddress: number;
    /** Told of each refusal, with the cap's flag (for /metrics). */
    onRefused?: (limit: ConnectionLimit) => void;
    /** Whether another limit refuses the connection (the HTTP/2 reset guard's, _reset-guard.ts). */
    refuses?: (socket: Socket) => boolean;
  },
  logger: Logger = taskwireLogger(),
): (socket: Socket) => boolean {
  let open = 0;
  const byAddress = new Map<string, number>();
  const refusedAll = rateLimitedWarning(
    logger,
    (n) =>
      `refused ${n} connection(s): ${o.max} are open, the limit (--max-connections); raise it (and ulimit -n) if clients need more`,
  );
  const refusedFrom = rateLimitedWarning(
    logger,
    (n, bucket) =>
      `refused ${n} connection(s) from addresses with ${o.perAddress} open, the limit per address (--max-connections-per-address), the last from ${bucket}; raise it if one host (or a NAT in front of many) needs more`,
  );
  const release = (bucket: string | undefined): void => {
    open--;
    if (bucket === undefined) return;
    const left = byAddress.get(bucket)! - 1;
    if (left === 0) byAddress.delete(bucket);
    else byAddress.set(bucket, left);
  };
  return (socket) => {
    if (open >= o.max) {
      o.onRefused?.("max-connections");
      refusedAll("");
      return false;
    }
    if (o.refuses?.(socket) === true) return false;
    const address = addressBucket(socket.remoteAddress ?? "");
    const bucket = address === "loopback" ? undefined : address;
    const n = bucket === undefined ? 0 : byAddress.get(bucket) ?? 0;
    if (n >= o.perAddress) {
      o.onRefused?.("max-connections-per-address");
      refusedFrom(address);
      return false;
    }
    open++;
    if (bucket !== undefined) byAddress.set(bucket, n + 1);
    socket.once("close", () => release(bucket));
    return true;
  };
}

/**
 * A warning at most every 10 s, `say` given how many it stands for and the latest `about`. Those held back are
 * said when the 10 s are up (a burst's last ones were otherwise never said unless another came later).
 */
export function rateLimitedWarning(logger: Logger, say: (n: number, about: string) => string): (about: string) => void {
  let lastReport = -Infinity;
  let unreported = 0;
  let last = "";
  let timer: NodeJS.Timeout | undefined;
  const report = (): void => {
    timer = undefined;
    lastReport = Date.now();
    logText(logger, "warning", say(unreported, last));
    unreported = 0;
  };
  return (about) => {
    unreported++;
    last = about;
    const wait = lastReport + 10_000 - Date.now();
    if (wait <= 0) report();
    else timer ??= setTimeout(report, wait).unref();
  };
}
