/**
 * The Node adapter: one TCP port for every protocol. Plaintext HTTP/1.1 and
 * HTTP/2 with prior knowledge (h2c) are told apart by the connection preface
 * (Node's allowHTTP1 works only with TLS, where ALPN decides). On every
 * connection, real gRPC (application/grpc) goes to the server's universal
 * RPC handlers, which can send HTTP/2 trailers; everything else goes to the
 * server's one fetch app through @hono/node-server.
 */
import { getRequestListener, RequestError } from "@hono/node-server";
import type { ServerResponse } from "node:http";
import { constants as h2constants, type Http2SecureServer, type Http2Server } from "node:http2";
import type { Socket } from "node:net";
import type { Logger } from "@logtape/logtape";
import { logText, taskwireLogger } from "../log/logger.ts";
import { logUnexpected } from "../log/error-log.ts";
import { clip } from "../core/errors.ts";
import { methodPaths } from "../rpc/universal.ts";
import { internalError, isGrpc, plainText } from "../server/app.ts";
import type { TaskwireServer } from "../server/server.ts";
import { createPacer, createTurnBudget } from "./_pacer.ts";
import { responseSink } from "./_response-sink.ts";
import {
  authorizationOf,
  type HeldRequest,
  holdCalls,
  type NodeRequest,
  type NodeResponse,
  pathOf,
  peerOf,
  whenOver,
} from "./_held-calls.ts";
import { grpcListener } from "./_grpc-listener.ts";
import { createSendBufferCap, frontSyscalls } from "./_send-buffer.ts";
import { acceptDescriptors, type Acceptors, createAcceptors, MAX_ACCEPT_DESCRIPTORS } from "./_acceptors.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import { createYoungStreams } from "./_young-streams.ts";
import { guardResets, type ResetGuard } from "./_reset-guard.ts";
import { plaintextStart, type StartConnection, type TlsFiles, tlsStart } from "./_inner-servers.ts";
import type { EndSession } from "./_h2-end.ts";
import {
  allowLongRequest,
  connectionBudget,
  createConnectionCaps,
  descriptors,
  type TransportLimits,
  transportLimits,
} from "./_transport-limits.ts";

export { DEFAULT_TRANSPORT_LIMITS, type TransportLimits } from "./_transport-limits.ts";
export type { TlsFiles } from "./_inner-servers.ts";

/** Where to listen, and the transport limits (unset ones keep DEFAULT_TRANSPORT_LIMITS; see TransportLimits). */
export interface ListenOptions extends Partial<TransportLimits> {
  /** Default 127.0.0.1: taskwire exposes host data, so it is local unless asked. */
  readonly host?: string;
  /** Default 7878; 0 picks a free port. */
  readonly port?: number;
  /**
   * Serve HTTPS (h2 and HTTP/1.1 by ALPN) with this certificate chain and key
   * (PEM). Node only. With `clientCa`, clients are asked for a certificate;
   * one that chains to it authenticates (the server's authenticator decides).
   */
  readonly tls?: TlsFiles;
  /**
   * Kernel send buffer per connection, bytes (Linux, Node; default 256 KiB, 0
   * for the kernel's autotuning up to 4 MiB). Smaller: a client that stops
   * reading is backpressured (and its overflow reported) sooner; larger:
   * more throughput to distant clients (one buffer per round trip).
   */
  readonly sendBuffer?: number;
  /** Where transport notices go (log/logger.ts); default taskwireLogger(). */
  readonly logger?: Logger;
}

/** The default per-connection send buffer (see ListenOptions.sendBuffer). */
export const DEFAULT_SEND_BUFFER = 256 * 1024;

/** A listening server. */
export interface Listening {
  readonly url: string;
  readonly port: number;
  readonly host: string;
  /** Stops accepting, ends streams and closes the source. */
  close(): Promise<void>;
}

/** Listens on Node; resolves once the port is bound. */
export async function listenNode(server: TaskwireServer, options: ListenOptions = {}): Promise<Listening> {
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? 7878;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`port must be 0-65535, got ${port}`);
  const sendBuffer = options.sendBuffer ?? DEFAULT_SEND_BUFFER;
  if (!Number.isInteger(sendBuffer) || sendBuffer < 0) {
    throw new RangeError(`sendBuffer must be a byte count >= 0, got ${sendBuffer}`);
  }
  const logger = options.logger ?? taskwireLogger();
  const sys = await frontSyscalls(logger);
  const capSendBuffer = createSendBufferCap(sendBuffer, sys);
  const holds = new WeakMap<NodeRequest, HeldRequest>(); // each request's caller and count, for its handler
  // Streams are paced while young and written to a sink, and client- and bidi-streaming requests (server reflection)
  // keep coming, so they have no request deadline: real gRPC's by its exact path, which is how its handlers are
  // found; the app's as it routes them (a path it decodes or normalizes to SubscribeExits' is SubscribeExits).
  const streaming = methodPaths(server.rpcHandlers, "server_streaming");
  const longRequests = methodPaths(server.rpcHandlers, "client_streaming", "bidi_streaming");
  const fetchListener = getRequestListener((req, env) => {
    const facts = holds.get(env.incoming);
    return server.fetch(req, {
      peer: peerOf(env.incoming),
      held: facts?.held,
      auth: facts?.caller.auth,
      streaming: () => {
        young.track(env.outgoing as never);
        return responseSink(env.outgoing);
      },
      longRequest: () => {
        if ("stream" in env.incoming) allowLongRequest(env.incoming.stream);
      },
    });
  }, { errorHandler: unbuiltRequest });
  const grpc = grpcListener(server, logger, holds);
  const limits = transportLimits(options);
  const responses = new Set<NodeResponse>(); // under way, for close() to let them finish
  const young = createYoungStreams({
    writesPerTurn: limits.acceptsPerTurn,
    graduateBytes: GRADUATE_BYTES,
    graduate: (socket) => capSendBuffer(socket),
  });
  const route = (req: NodeRequest, res: NodeResponse): void => {
    if (!responses.has(res)) return; // the client left while its request waited its turn
    // HTTP/1.1 gRPC falls through to the app, which answers 415: it cannot carry trailers.
    if (req.httpVersionMajor === 2 && isGrpc(req.headers["content-type"])) {
      if (streaming.has(pathOf(req))) young.track(res as never);
      if ("stream" in req && longRequests.has(pathOf(req))) allowLongRequest(req.stream);
      grpc(req, res);
    } else void fetchListener(req, res as never);
  };
  // A request listener that throws would be an uncaught exception (the process exits) once a connection is
  // past its first request: whatever a request's routing throws ends that request alone.
  const serve = (req: NodeRequest, res: NodeResponse): void => {
    try {
      route(req, res);
    } catch (err) {
      logUnexpected("routing a request failed", err, { path: clip(req.url ?? "") }, logger);
      if (res.headersSent) res.destroy();
      else res.writeHead(500, { "content-type": "text/plain; charset=UTF-8" }).end("internal error\n");
    }
  };
  const pace = createPacer(limits.acceptsPerTurn, logger);
  // Requests on connections already serving: served at once up to a budget per turn, past it paced in batches of
  // the same size, round-robin between callers (a burst on open connections, _pacer.ts's createTurnBudget).
  const direct = createTurnBudget(limits.acceptsPerTurn * DIRECT_PER_ACCEPT);
  const paceOverflow = createPacer(limits.acceptsPerTurn * DIRECT_PER_ACCEPT, logger);
  const serving = new WeakSet<object>(); // connections (HTTP/1.1 sockets, HTTP/2 sessions) past their first request
  const hold = holdCalls(server, holds);
  // The one HTTP/2 server's (plaintext or TLS), once start() has made it.
  let resets: ResetGuard | undefined;
  // Asked at accept and again by the h2c sniffer (_inner-servers.ts): the guard counts and logs a refusal itself.
  const refuses = (socket: Socket): boolean => resets?.refuses(socket.remoteAddress ?? "") === true;
  const watch = (h2: Http2Server | Http2SecureServer) => {
    resets = guardResets(h2, {
      perSecond: limits.h2MaxResetsPerSecond,
      perAddressPerSecond: limits.h2MaxResetsPerSecondPerAddress,
      onClosed: (limit) => server.refusedConnection(limit),
      onRefused: () => server.refusedConnection("h2-max-resets-per-second-per-address"),
      logger,
    });
    return refuses;
  };
  const dispatch = (req: NodeRequest, res: NodeResponse): void => {
    responses.add(res);
    whenOver(req, res, () => {
      responses.delete(res);
      // HTTP/1.1 pipelining: Node never closes a response queued behind another when their socket closes (whenOver
      // runs this then). Closed here, or its handler waits for it for ever: a stream's abort signal and
      // @hono/node-server's writer of its body (each listening for "close") kept its listener and queue for the life
      // of the process. Checked a microtask later: the socket's response in progress is closed by Node's own
      // listener, which may come after.
      if ("stream" in req) return;
      queueMicrotask(() => {
        if ((res as ServerResponse).closed) return;
        res.destroy();
        res.emit("close");
      });
    });
    const connection = "stream" in req ? req.stream.session ?? req.socket : req.socket;
    const caller = server.caller(peerOf(req), authorizationOf(req));
    if (!caller.credentialed) closeAfter(req, res, { deadlineMs: limits.requestTimeoutMs, end: start.endSession });
    if (!hold(caller, req, res)) return;
    // A session that has just reset a stream is paced like a new connection (rapid reset, _reset-guard.ts): its
    // streams are served a batch per turn, and those it resets while they wait are dropped unrouted.
    if (serving.has(connection) && resets?.resetRecently(connection) !== true) {
      if (direct.take()) return serve(req, res);
      return paceOverflow(caller.key, () => serve(req, res), () => !responses.has(res));
    }
    // Until its first request is served, everything a connection sends waits its turn (the other streams an
    // HTTP/2 client opens at once included, or they would skip the pacing).
    pace(caller.key, () => {
      serving.add(connection);
      serve(req, res);
    }, () => !responses.has(res)); // the client left while it waited: dropped, not counted in the turn's batch
  };
  const sockets = new Set<Socket>(); // the connections close() ends: plaintext ones, and TLS ones once secure
  const accepted = new Set<Socket>(); // every raw connection, for close() to cut what is left (TLS handshakes)
  const track = (socket: Socket, set = sockets): void => {
    set.add(socket);
    socket.once("close", () => set.delete(socket));
  };
  const start = options.tls
    ? tlsStart(options.tls, dispatch, limits, track, watch)
    : plaintextStart(dispatch, limits, track, watch);
  const fds = descriptors();
  const copies = sys === undefined ? 1 : acceptDescriptors(limits.acceptsPerTurn, fds && fds.limit - fds.open);
  const maxConnections = connectionBudget(limits.maxConnections, { fds, copies: copies - 1, logger });
  if (sys !== undefined && copies < Math.min(limits.acceptsPerTurn, MAX_ACCEPT_DESCRIPTORS)) {
    logText(
      logger,
      "warning",
      `accepting new connections through ${copies} descriptor(s), not --accepts-per-turn ${limits.acceptsPerTurn}: the process may open few more descriptors (ulimit -n), and they are kept for connections; raise the limit to accept more per turn`,
    );
  }
  const tcp = front(
    (raw) => {
      track(raw, accepted);
      start.start(raw);
    },
    {
      server,
      copies,
      maxConnections,
      limits,
      sys,
      logger,
      refuses,
    },
    (raw) => capSendBuffer(raw, YOUNG_SEND_BUFFER),
  );
  // The accept queue holds a whole storm: at Node's default of 511, a burst of connections arriving
  // while the loop is busy overflowed it, and the kernel dropped the SYNs of everyone connecting
  // then (clients retry after 1 s, then 3 s). The kernel caps it at net.core.somaxconn.
  const info = await tcp.listen({ port, host, backlog: Math.max(511, maxConnections) });
  const urlHost = info.family === "IPv6" ? `[${info.address}]` : info.address;
  return {
    url: `${options.tls ? "https" : "http"}://${urlHost}:${info.port}`,
    port: info.port,
    host,
    close: async () => {
      await closeAll(tcp, { sockets, accepted, responses }, server);
      start.close();
    },
  };
}

// A request no Fetch API Request could be made of (@hono/node-server's RequestError: a Host or :authority that is no
// host[:port], such as "x@127.0.0.1" or a port past 65535, a backslash in the path) gets a 400 saying so; before, an
// empty one. Any other error is the app's: a plain 500, logged.
function unbuiltRequest(err: unknown): Response {
  if (!(err instanceof RequestError)) return internalError(err);
  return plainText(
    `bad request (${clip(err.message)}): send this server's host name or address as Host or :authority, ` +
      "and a path that starts with /\n",
    400,
  );
}

// With authentication on, only a caller with credentials keeps its connection: one with none (or bad ones) has it
// closed once its response is done (HTTP/1.1: "Connection: close"; HTTP/2: GOAWAY, its other streams let finish),
// so requests that need none (/healthz, /ui, a refusal) cannot hold connections open for nothing and lock others out.
// A response the client does not read (an HTTP/2 window of 0, an HTTP/1.1 socket never read) is never done: past
// `deadlineMs` its stream is cancelled, or its HTTP/1.1 connection closed.
// HTTP/2 sessions are ended by `end` (_h2-end.ts), never session.close(): a client's streams read after that crashed
// Node 20.
function closeAfter(req: NodeRequest, res: NodeResponse, o: { deadlineMs: number; end: EndSession }): void {
  const cut = setTimeout(() => {
    if ("stream" in req) req.stream.close(h2constants.NGHTTP2_CANCEL);
    else req.socket.destroy();
  }, o.deadlineMs);
  cut.unref();
  // The stream's session is taken now: a stream that has ended no longer names it.
  const session = "stream" in req ? req.stream.session : undefined;
  whenOver(req, res, () => {
    clearTimeout(cut);
    if (session !== undefined) o.end(session);
  });
  if (!("stream" in req)) (res as ServerResponse).shouldKeepAlive = false;
}

/**
 * A connection's send buffer until one of its streams has written GRADUATE_BYTES (runtime/_young-streams.ts):
 * small, so that a client that never reads holds less of what a storm of them costs to write.
 */
const YOUNG_SEND_BUFFER = 32 * 1024;

/** More than a client that never reads takes in (~300 KB with a young send buffer, measured). */
const GRADUATE_BYTES = 1024 * 1024;
/**
 * Requests on open connections served at once per turn, per --accepts-per-turn (8 x 8 = 64 by default): a multiple,
 * so that raising it for a busier server raises this too. Routing a GetInfo took ~0.2 ms in a flood on this 2-core
 * machine, so 64 direct and 64 paced keep this path's part of a turn near 25 ms (SECURITY.md, Connection storms).
 */
const DIRECT_PER_ACCEPT = 8;

// The listening socket (through --accepts-per-turn descriptors, see _acceptors.ts): it accepts (capped at
// maxConnections, and per address), sets up each raw socket, and hands it to `start`.
function front(
  start: StartConnection,
  o: {
    server: TaskwireServer;
    copies: number;
    maxConnections: number;
    limits: TransportLimits;
    sys: Syscalls | undefined;
    logger: Logger;
    /** Whether a new connection is refused for now (the HTTP/2 reset guard's `refuses`). */
    refuses: (socket: Socket) => boolean;
  },
  capSendBuffer: (s: Socket) => void,
): Acceptors {
  // Per-socket settings go on the raw socket, before any TLS: an error handler from accept on (a reset
  // before the first byte must not become an uncaught 'error'), no Nagle delay (a stream is many small
  // writes; Node's own servers set it on sockets they accept, and these are accepted here), and the send buffer.
  const admit = createConnectionCaps({
    max: o.maxConnections,
    perAddress: o.limits.maxConnectionsPerAddress,
    onRefused: (limit) => o.server.refusedConnection(limit),
    refuses: o.refuses,
  }, o.logger);
  return createAcceptors((raw) => {
    raw.on("error", () => raw.destroy());
    if (!admit(raw)) return void raw.destroy();
    raw.setNoDelay(true);
    capSendBuffer(raw);
    start(raw);
  }, { perTurn: o.copies, sys: o.sys, logger: o.logger });
}

/** How long close() waits for responses to finish (the streams it ended, calls under way) before it cuts them. */
const CLOSE_GRACE_MS = 2000;

// server.close() ends every stream with UNAVAILABLE (SHUTTING_DOWN), but each
// stream writes that status (Connect's end-stream message, gRPC-Web's
// trailer frame, gRPC's trailers) a few turns later: destroying the sockets
// at once discarded it, and clients saw the connection die instead (ABORTED
// on HTTP/1.1, CANCEL on HTTP/2). So: stop accepting, end the streams, wait
// for the responses under way to finish (at most CLOSE_GRACE_MS), then end
// each connection after what it has buffered (destroyed if it lingers).
async function closeAll(
  tcp: Acceptors,
  { sockets, accepted, responses }: { sockets: Set<Socket>; accepted: Set<Socket>; responses: Set<NodeResponse> },
  server: TaskwireServer,
): Promise<void> {
  const closed = tcp.close();
  await server.close();
  await finished(responses, CLOSE_GRACE_MS);
  for (const s of sockets) s.end();
  // The wait's timer keeps the process alive: a socket that reads nothing (one whose client's leaving was lost)
  // does not, and with the destroying timers unref'd the loop ran empty and the process ended mid-shutdown.
  await finished(sockets, CLOSE_GRACE_MS);
  for (const s of sockets) s.destroy();
  // What is left never became a connection close() could end: a TLS handshake under way waited for
  // --header-timeout-ms (10 s by default) before the listening server could finish closing.
  for (const raw of accepted) raw.destroy();
  await closed;
}

// Resolves once `open` is empty (each member removes itself on "close"), or after `ms`.
function finished(open: Set<NodeResponse> | Set<Socket>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    const check = (): void => {
      if (open.size > 0) return;
      clearTimeout(timer);
      resolve();
    };
    for (const member of open) member.once("close", check);
    check();
  });
}
