/**
 * The client's address as a request's TCP socket read it at accept: a TLS socket whose client has already reset the
 * connection has none (Node asks the kernel again), and every such request was one caller ("anonymous@"), as every
 * such HTTP/2 session was one address bucket for the reset guard.
 */
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { peerOf } from "../src/runtime/_held-calls.ts";
import { remoteAddressOf, tcpSocketOf, tcpUnderTls } from "../src/runtime/_tcp-socket.ts";

// A TCP socket that read its peer at accept, and a TLS socket over it that can no longer read one (its client gone).
function vanishedTls(address: string): { tcp: Socket; tls: Socket } {
  const tcp = Object.assign(new EventEmitter(), { remoteAddress: address, _parent: null }) as never as Socket;
  const tls = Object.assign(new EventEmitter(), { remoteAddress: undefined, _parent: tcp }) as never as Socket;
  return { tcp, tls };
}

describe("the TCP socket under a connection", () => {
  it("is the TLS socket's _parent, or the socket itself; its address is the one read at accept", () => {
    const { tcp, tls } = vanishedTls("192.0.2.7");
    expect(tcpUnderTls(tls)).toBe(tcp);
    expect(tcpUnderTls(tcp)).toBeUndefined(); // a TCP socket's _parent is null
    expect(tcpSocketOf(tls)).toBe(tcp);
    expect(tcpSocketOf(tcp)).toBe(tcp);
    expect(remoteAddressOf(tls)).toBe("192.0.2.7");
  });

  it("gives a request over a TLS socket whose client has gone the address its TCP socket was accepted from", () => {
    const { tls } = vanishedTls("192.0.2.8");
    expect(peerOf({ socket: tls } as never).address).toBe("192.0.2.8");
  });
});
