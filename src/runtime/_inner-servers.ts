/**
 * The servers behind the Node adapter's listening socket (node.ts front()): plaintext HTTP/1.1 and h2c on one
 * port, told apart by the first bytes, or TLS with h2 and HTTP/1.1 by ALPN; each with the transport limits.
 */
import { createServer as createHttp1Server } from "node:http";
import {
  createSecureServer,
  createServer as createHttp2Server,
  type Http2SecureServer,
  type Http2Server,
  type Http2Session,
  type SecureServerOptions,
} from "node:http2";
import type { Socket } from "node:net";
import type { NodeRequest, NodeResponse } from "./_held-calls.ts";
import { tcpUnderTls } from "./_tcp-socket.ts";
import { type EndSession, endSessions } from "./_h2-end.ts";
import {
  applyHttp1Limits,
  http1Options,
  http2Options,
  limitHttp2Sessions,
  trackHttp1Deadlines,
  type TransportLimits,
} from "./_transport-limits.ts";

/** A certificate chain and key (PEM), and the CA client certificates must chain to, if any. */
export interface TlsFiles {
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  readonly clientCa?: string | Buffer | undefined;
}

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** How long an idle HTTP/2 session over TLS may take to finish closing before its socket is destroyed. */
const IDLE_CLOSE_GRACE_MS = 2000;

/** How often the TCP sockets under TLS are asked whether their client is still there (sweepVanishedTls). */
const VANISHED_SWEEP_MS = 2000;

// What the front does with a connection it has accepted.
export type StartConnection = (socket: Socket) => void;

// What watches the HTTP/2 server's sessions besides the transport limits (the reset guard, _reset-guard.ts). It
// gives whether a connection is to be refused before the HTTP/2 server reads its first bytes (and counts it).
export type WatchSessions = (server: Http2Server | Http2SecureServer) => (socket: Socket) => boolean;

// How the front's connections are served (plaintext or TLS), what ends an HTTP/2 session of it (never
// session.close(), _h2-end.ts), and what stops that server's timers on close.
export interface Inner {
  readonly start: StartConnection;
  readonly endSession: EndSession;
  readonly close: () => void;
}

// Plaintext: HTTP/1.1 and h2c on one port, each with the transport limits; the first bytes decide which.
export function plaintextStart(
  dispatch: (req: NodeRequest, res: NodeResponse) => void,
  limits: TransportLimits,
  track: (socket: Socket) => void,
  watch: WatchSessions,
): Inner {
  const h1 = createHttp1Server(http1Options(limits), dispatch);
  const h2 = createHttp2Server(http2Options(limits), dispatch);
  const endSession = endSessions(h2);
  limitHttp2Sessions(h2, limits, endSession);
  const refuses = watch(h2);
  return {
    start: (socket) => {
      track(socket);
      sniff(socket, { h1, h2, firstBytesMs: limits.headerTimeoutMs, refuses });
    },
    endSession,
    close: trackHttp1Deadlines(h1),
  };
}

// TLS: h2 and HTTP/1.1 by ALPN. HTTP/2 options are set at creation; HTTP/1.1 (allowHTTP1) takes its
// limits as properties. The TLS server never listens itself: it is handed the front's paced sockets.
export function tlsStart(
  tls: TlsFiles,
  dispatch: (req: NodeRequest, res: NodeResponse) => void,
  limits: TransportLimits,
  track: (socket: Socket) => void,
  watch: WatchSessions,
): Inner {
  const server = createSecureServer({
    ...tlsOptions(tls),
    allowHTTP1: true,
    ...http2Options(limits),
    handshakeTimeout: limits.headerTimeoutMs,
  }, dispatch);
  applyHttp1Limits(server, limits);
  const endSession = endSessions(server);
  limitHttp2Sessions(server, limits, endIdleTlsSessions(server, endSession));
  watch(server);
  server.on("secureConnection", track);
  const stopSweep = sweepVanishedTls(server);
  const stopDeadlines = trackHttp1Deadlines(server);
  return {
    start: (socket) => server.emit("connection", socket),
    endSession,
    close: () => {
      stopSweep();
      stopDeadlines();
    },
  };
}

// Node 20's TLS socket can miss its client's reset for good: still reading, never ended nor closed. An HTTP/2
// session over it whose streams were answered never delivered those answers, so it never went idle (the idle close
// below never came), and its streams stayed counted as calls under way. Clients over TLS each sending 250 GetInfo
// streams and resetting the TCP connection at once: 771 of 784 connections kept their descriptors for good (RSS
// 794 MB), and the address's calls were refused (429, "700 calls under way") long after. So the TCP sockets under
// TLS are asked every VANISHED_SWEEP_MS whether the kernel still has their peer, and those it has not are destroyed,
// which closes their session and lets its calls go.
function sweepVanishedTls(server: ReturnType<typeof createSecureServer>): () => void {
  const tcps = new Set<Socket>();
  server.on("secureConnection", (tls: Socket) => {
    const tcp = tcpUnderTls(tls);
    if (tcp === undefined) return;
    tcps.add(tcp);
    tcp.once("close", () => tcps.delete(tcp));
  });
  const timer = setInterval(() => {
    for (const tcp of tcps) if (peerGone(tcp)) tcp.destroy();
  }, VANISHED_SWEEP_MS).unref();
  return () => clearInterval(timer);
}

// Whether the kernel has dropped `tcp`'s connection (getpeername fails, ENOTCONN). Asked of its handle: the socket's
// remoteAddress keeps its first answer.
function peerGone(tcp: Socket): boolean {
  const handle = (tcp as Socket & { _handle?: { getpeername?: (out: object) => number } | null })._handle;
  return typeof handle?.getpeername === "function" && handle.getpeername({}) !== 0;
}

// Node 20's HTTP/2 over TLS can lose a client's leaving: with clients that connect, send the preface and reset,
// a few at a time, 24-37 of 240 sessions never saw it (their TLS socket still reading, not ended), and closing
// such a session on the idle timeout never finished (neither did destroy()): their sockets (90-209 after the
// test's storms) kept their descriptors and places in the connection caps for good, until none were left. So
// an idle session is ended (`end`), and if it has not finished closing after a grace, its TLS socket is destroyed.
// Node creates the session (and emits "session") in its own "secureConnection" listener, registered before
// the one here that pairs them.
function endIdleTlsSessions(
  server: ReturnType<typeof createSecureServer>,
  end: EndSession,
): (session: Http2Session) => void {
  const sockets = new WeakMap<Http2Session, Socket>();
  let latest: Http2Session | undefined;
  server.on("session", (session: Http2Session) => void (latest = session));
  server.on("secureConnection", (socket: Socket) => {
    if (latest !== undefined) sockets.set(latest, socket);
    latest = undefined;
  });
  return (session) => {
    end(session);
    setTimeout(() => {
      if (!session.destroyed) sockets.get(session)?.destroy();
    }, IDLE_CLOSE_GRACE_MS).unref();
  };
}

// One plaintext port for HTTP/1.1 and h2c: the first bytes decide which
// server gets the socket. The preface may arrive in pieces, so bytes are
// gathered until they match it or cannot.
function sniff(
  socket: Socket,
  o: {
    h1: ReturnType<typeof createHttp1Server>;
    h2: ReturnType<typeof createHttp2Server>;
    firstBytesMs: number;
    refuses: (socket: Socket) => boolean;
  },
): void {
  let seen = Buffer.alloc(0);
  // A socket that sends nothing, or only part of the preface, reaches neither server and their timeouts:
  // without this it would hold its descriptor for ever.
  const deadline = setTimeout(() => socket.destroy(), o.firstBytesMs).unref();
  socket.once("close", () => clearTimeout(deadline));
  const onData = (chunk: Buffer): void => {
    seen = Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, H2_PREFACE.length);
    const isPrefix = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (isPrefix && seen.length < H2_PREFACE.length) return; // could still be h2c: wait for more
    clearTimeout(deadline);
    socket.off("data", onData);
    socket.pause();
    socket.unshift(seen);
    if (isPrefix) {
      // Asked again here, not only as it was accepted: a connection whose first bytes come in the same poll phase
      // as those that went past the reset limits would otherwise have them all handled (up to ~800 streams).
      if (o.refuses(socket)) return void socket.destroy();
      // The http2 session takes the bytes already buffered on the socket and then reads the handle itself.
      o.h2.emit("connection", socket);
    } else {
      o.h1.emit("connection", socket);
      socket.resume();
    }
  };
  socket.on("data", onData);
}

function tlsOptions(tls: TlsFiles): SecureServerOptions {
  const base = { cert: tls.cert, key: tls.key };
  if (tls.clientCa === undefined) return base;
  // Ask for a certificate but let the handshake finish without one, so that a
  // missing or unknown certificate gets UNAUTHENTICATED and an audit line
  // instead of a bare handshake failure; a bearer token may still authenticate.
  return { ...base, ca: tls.clientCa, requestCert: true, rejectUnauthorized: false };
}
