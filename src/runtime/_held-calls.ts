/**
 * Requests counted as calls under way, for the Node adapter (node.ts): each
 * from its arrival until its response is delivered (TaskwireServer.holdCall),
 * and when a response is over on either HTTP version (whenOver); and who a
 * request's caller is (authorizationOf, peerOf).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { constants as h2constants, type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { Peer } from "../auth/authenticator.ts";
import { type CallHold, REFUSED_CALL_HEADERS } from "../rpc/held-call.ts";
import type { Caller, TaskwireServer } from "../server/server.ts";
import { remoteAddressOf } from "./_tcp-socket.ts";
import { refuseStream } from "./_h2-end.ts";

/** A request as either of Node's HTTP servers hands it over. */
export type NodeRequest = IncomingMessage | Http2ServerRequest;
/** A response as either of Node's HTTP servers hands it over. */
export type NodeResponse = ServerResponse | Http2ServerResponse;

/** What the adapter knows of a request it counts: its caller (authenticated once) and its count's hold for the handlers. */
export interface HeldRequest {
  readonly caller: Caller;
  readonly held: CallHold;
}

const peers = new WeakMap<object, Peer>();

/** The request's peer: its address, and on TLS its client certificate (computed once per connection). */
export function peerOf(req: NodeRequest): Peer {
  const socket = req.socket as TLSSocket;
  const known = peers.get(socket);
  if (known !== undefined) return known;
  // The TCP socket's: a TLS socket whose client has reset the connection has none, and every such request was
  // one caller, "anonymous@".
  const address = remoteAddressOf(socket);
  let peer: Peer = { address };
  if (typeof socket.getPeerCertificate === "function") {
    const cert = socket.getPeerCertificate();
    if (cert !== undefined && Object.keys(cert).length > 0) {
      const cn = cert.subject?.CN;
      peer = {
        address,
        certificate: {
          authorized: socket.authorized,
          subject: Array.isArray(cn) ? cn[0] : cn,
          error: socket.authorizationError === null ? undefined : String(socket.authorizationError),
        },
      };
    }
  }
  peers.set(socket, peer);
  return peer;
}

/**
 * The request's Authorization, as a fetch Request's headers give it: several
 * joined with ", " (which no credential matches, so the request is refused as
 * on Deno and Bun). Node's `headers` keeps only the first of duplicates, which
 * would credit a request with whichever came first.
 */
export function authorizationOf(req: NodeRequest): string | undefined {
  let found: string | undefined;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 13 && raw[i]!.toLowerCase() === "authorization") {
      found = found === undefined ? raw[i + 1]! : `${found}, ${raw[i + 1]!}`;
    }
  }
  return found;
}

/** The request's path, without its query. */
export function pathOf(req: NodeRequest): string {
  return req.url?.split("?", 1)[0] ?? "";
}

// Every request counts as a call under way from its arrival until its response is delivered (on HTTP/2 the
// stream's end, which a client that keeps its window at 0 never lets come; on HTTP/1.1 the response's last byte
// handed to the kernel, or its socket's close), since until then the server holds the request and its response
// (~27 KB for an HTTP/2 stream's objects alone, measured). A SubscribeExits stream admitted as a stream (its handler,
// through `holds`) is counted among streams instead, until its response is delivered; reflection streams stay
// counted as calls while open. Over a limit, an RPC goes on to its handler, which refuses a unary call in its own
// protocol; any other path is answered 429 here. Past twice a limit the caller's refusals are not read either: its
// HTTP/2 stream is reset (REFUSED_STREAM, which clients may retry) or its HTTP/1.1 connection closed, unanswered.
// False: dealt with here.
export function holdCalls(
  server: TaskwireServer,
  holds: WeakMap<NodeRequest, HeldRequest>,
): (caller: Caller, req: NodeRequest, res: NodeResponse) => boolean {
  const rpcs = new Set(server.rpcHandlers.map((h) => h.requestPath));
  return (caller, req, res) => {
    const held = server.holdCall(caller);
    whenOver(req, res, held.release);
    if (held.flooding) {
      if ("stream" in req) refuseStream(req.stream, h2constants.NGHTTP2_REFUSED_STREAM);
      else req.socket.destroy();
      return false;
    }
    holds.set(req, {
      caller,
      held: {
        refusal: held.refusal,
        handOver: (leave) => {
          held.release();
          whenOver(req, res, leave);
          return true;
        },
        reset: () => (resetResponse(req), true),
      },
    });
    if (held.refusal === undefined || rpcs.has(pathOf(req))) return true;
    res.writeHead(429, REFUSED_CALL_HEADERS).end(`${held.refusal}\n`);
    return false;
  };
}

// Drops a response its client takes nothing of: its HTTP/2 stream reset with ENHANCE_YOUR_CALM (the gRPC spec maps it
// to RESOURCE_EXHAUSTED; connect-node's clients report INTERNAL), or its HTTP/1.1 connection closed. Both
// let go of what the response held, whatever the peer does (the stream a turn later, outside nghttp2's read:
// _h2-end.ts); the response's "close" follows.
function resetResponse(req: NodeRequest): void {
  if ("stream" in req) refuseStream(req.stream, h2constants.NGHTTP2_ENHANCE_YOUR_CALM);
  else req.socket.destroy();
}

// Runs `fn` once when a response is over: its "close", or on HTTP/1.1 its socket's. Node does not close a response
// still queued behind another (pipelining) when the socket closes (_http_server.js socketOnClose aborts only the
// requests): without this, such a response's count and its place in `responses` stayed for the life of the process.
// One "close" listener per socket, whatever the number of responses queued on it.
const overOnSocket = new WeakMap<Socket, Set<() => void>>();
export function whenOver(req: NodeRequest, res: NodeResponse, fn: () => void): void {
  let done = false;
  const once = (): void => {
    if (done) return;
    done = true;
    fn();
  };
  res.once("close", once);
  if ("stream" in req) return;
  const socket = req.socket;
  let pending = overOnSocket.get(socket);
  if (pending === undefined) {
    const set = new Set<() => void>();
    overOnSocket.set(socket, pending = set);
    socket.once("close", () => {
      for (const f of set) f();
      set.clear();
    });
  }
  if (socket.destroyed) queueMicrotask(once); // its "close" may have been emitted already
  pending.add(once);
  res.once("close", () => pending.delete(once));
}
