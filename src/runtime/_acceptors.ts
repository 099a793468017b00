/**
 * One listening socket, accepted from through several descriptors, so that a busy event loop still takes
 * new connections a batch per turn.
 *
 * libuv (1.45 on; Node 20 ships 1.46) accepts one connection each time the listening socket is reported
 * readable, and then returns to the event loop (`uv__server_io` in src/unix/stream.c: it dropped its accept
 * loop so that processes sharing a port share its connections). A process therefore accepts one connection
 * per event-loop turn. While a storm's requests are served a turn takes 30-50 ms: 20-35 accepts a second,
 * and a client connecting then waited seconds in the kernel's accept queue, first come first accepted,
 * behind the storm's connections, before the per-caller pacing (_pacer.ts) could see it.
 *
 * Each copy of the descriptor (fcntl F_DUPFD_CLOEXEC) is registered with epoll on its own and reported
 * readable on its own, so a turn accepts one connection per copy from the one accept queue. The connections
 * accepted then wait in the pacer, which serves callers round-robin, instead of in the kernel's queue.
 */
import type { Logger } from "@logtape/logtape";
import { type AddressInfo, createServer, type Server, type Socket } from "node:net";
import type { Syscalls } from "../sys/syscalls.ts";
import { logText } from "../log/logger.ts";

/** Where and how to listen. */
export interface AcceptorsListen {
  readonly port: number;
  readonly host: string;
  /** listen(2)'s backlog; each copy passes the same, as listen() on a listening socket sets it again. */
  readonly backlog: number;
}

/** The listening socket and its copies. */
export interface Acceptors {
  /** Binds and listens, then adds the copies; resolves with the bound address (rejects saying what to do). */
  listen(at: AcceptorsListen): Promise<AddressInfo>;
  /** Stops accepting on every descriptor; resolves once each is closed. */
  close(): Promise<void>;
}

/** Options for createAcceptors. */
export interface AcceptorsOptions {
  /** Descriptors to accept from, the first included (so at most this many connections per turn). */
  readonly perTurn: number;
  /** Makes the copies; without it (no FFI) the one listener accepts alone. */
  readonly sys: Pick<Syscalls, "dupCloexec"> | undefined;
  readonly logger: Logger;
}

/** At most this many descriptors accept, however many are asked for (each a descriptor taken from connections). */
export const MAX_ACCEPT_DESCRIPTORS = 64;

/**
 * How many descriptors to accept through: `wanted` (--accepts-per-turn), at most MAX_ACCEPT_DESCRIPTORS and at
 * most one per 64 descriptors the process may still open (`free`; unknown: no such bound), and at least one.
 * A process with few descriptors to spare keeps them for connections.
 */
export function acceptDescriptors(wanted: number, free: number | undefined): number {
  const room = free === undefined ? MAX_ACCEPT_DESCRIPTORS : Math.floor(free / 64);
  return Math.max(1, Math.min(wanted, MAX_ACCEPT_DESCRIPTORS, room));
}

/** Listeners that all hand their connections to `onConnection`. */
export function createAcceptors(onConnection: (socket: Socket) => void, o: AcceptorsOptions): Acceptors {
  if (!Number.isInteger(o.perTurn) || o.perTurn < 1) throw new RangeError(`perTurn must be >= 1, got ${o.perTurn}`);
  const first = createServer(onConnection);
  const servers: Server[] = [first];
  const acceptFailed = throttled(o.logger);
  return {
    async listen(at) {
      await listenOn(first, { port: at.port, host: at.host }, at.backlog).catch((err: Error) => {
        throw describeListenError(err, at.host, at.port);
      });
      first.on("error", acceptFailed);
      const fd = (first as unknown as { _handle?: { fd?: number } })._handle?.fd;
      if (o.sys !== undefined && typeof fd === "number" && fd >= 0) {
        await addCopies(servers, { ...o, sys: o.sys, fd, backlog: at.backlog, onConnection, acceptFailed });
      }
      return first.address() as AddressInfo;
    },
    close: () => Promise.all(servers.map(closeServer)).then(() => {}),
  };
}

async function addCopies(
  servers: Server[],
  o: AcceptorsOptions & {
    sys: NonNullable<AcceptorsOptions["sys"]>;
    fd: number;
    backlog: number;
    onConnection: (s: Socket) => void;
    acceptFailed: (err: Error) => void;
  },
): Promise<void> {
  for (let i = 1; i < o.perTurn; i++) {
    const copy = o.sys.dupCloexec(o.fd);
    if (copy < 0) return warnShort(o.logger, servers.length, `fcntl F_DUPFD_CLOEXEC failed: errno ${-copy}`);
    const server = createServer(o.onConnection);
    try {
      await listenOn(server, { fd: copy }, o.backlog);
    } catch (err) {
      // Not closed here: Node may have taken the descriptor and closed it, and its number may be another's now.
      return warnShort(o.logger, servers.length, (err as Error).message);
    }
    server.on("error", o.acceptFailed);
    servers.push(server);
  }
}

function warnShort(logger: Logger, count: number, why: string): void {
  logText(
    logger,
    "warning",
    `accepting new connections through ${count} descriptor(s), so at most ${count} per event-loop turn (${why}); raise ulimit -n if that is the cause`,
  );
}

// After listening, a server's "error" is a failed accept (Node emits it, and with no listener it would end the
// process): the connection is lost, the socket keeps listening. Logged at most once every 10 s.
function throttled(logger: Logger): (err: Error) => void {
  let last = -Infinity;
  return (err) => {
    if (Date.now() - last < 10_000) return;
    last = Date.now();
    logText(logger, "error", `accepting a connection failed (${err.message}); the server keeps listening`);
  };
}

// The backlog goes as its own argument: Node reads `options.backlog` for a port but not for an `fd`, and
// listen(2) on a socket already listening sets its backlog again (each copy at Node's 511 cut the accept queue
// the first one was given).
function listenOn(server: Server, options: { port?: number; host?: string; fd?: number }, backlog: number) {
  return new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options, backlog, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** The address cannot be listened on (in use, not this machine's, privileged); the message says what to do. */
export class ListenError extends Error {
  override readonly name = "ListenError";
}

// A bind or listen error as what to do about it. The settings are named as the CLI's flags (--host, --port), the
// way its users set them.
function describeListenError(err: Error, host: string, port: number): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "EADDRINUSE") {
    return new ListenError(`--port ${port} on ${host} is in use; pick another port (0 picks a free one)`, {
      cause: err,
    });
  }
  if (code === "EACCES") {
    return new ListenError(
      `no permission to listen on --port ${port} (${host}): ports below 1024 need CAP_NET_BIND_SERVICE (or a lower net.ipv4.ip_unprivileged_port_start); use a port above 1023`,
      { cause: err },
    );
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") {
    return new ListenError(`--host ${host} does not resolve to an address of this machine; use 127.0.0.1 or 0.0.0.0`, {
      cause: err,
    });
  }
  if (code === "EADDRNOTAVAIL") {
    return new ListenError(`--host ${host} is not an address of this machine; use 127.0.0.1 or 0.0.0.0`, {
      cause: err,
    });
  }
  return err;
}
