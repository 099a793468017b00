/**
 * The TCP socket under a connection's socket. A TLS socket wraps it in `_parent`: Node's own field, with no public
 * API for it. An HTTP/2 session's socket, and its requests' and responses' sockets, are proxies that forward
 * property reads, so the same read works through them.
 */
import type { Socket } from "node:net";

type Wrapped = Socket & { _parent?: Socket | null };

/** The TCP socket under a TLS socket, or undefined for a TCP socket itself (whose `_parent` is null). */
export function tcpUnderTls(socket: Socket): Socket | undefined {
  return (socket as Wrapped)._parent ?? undefined;
}

/** The TCP socket at the bottom of `socket`: itself when it is one. */
export function tcpSocketOf(socket: Socket): Socket {
  let s = socket;
  for (let under = tcpUnderTls(s); under !== undefined; under = tcpUnderTls(s)) s = under;
  return s;
}

/**
 * The client's address as its TCP socket read it when it was accepted (the acceptor asked, and the socket keeps the
 * answer). A TLS socket asks the kernel again, and gets none for a client that has already reset the connection.
 */
export function remoteAddressOf(socket: Socket): string {
  return tcpSocketOf(socket).remoteAddress ?? "";
}
