/**
 * connect-node's HTTP/2 session manager, with every session it opens kept
 * from crashing the process. Node emits a session's error on its streams and
 * then on the session itself; connect-node takes its listener off a session
 * as it leaves the state that had it, and a session error emitted after
 * that had no listener: an uncaught exception. A gRPC call to a server that
 * does not take HTTP/2 without TLS (Bun's, any HTTP/1.1-only server or
 * proxy) ended the calling process so, after the call itself had failed
 * with the error. The error still reaches the call (its stream's) and the
 * manager (while it listens); this listener only keeps it from being thrown.
 */
import { Http2SessionManager } from "@connectrpc/connect-node";

// node:http2's, as connect-node's types name them (the SDK's own build takes no Node types).
type ClientHttp2Stream = Awaited<ReturnType<Http2SessionManager["request"]>>;
type ClientHttp2Session = NonNullable<ClientHttp2Stream["session"]>;

const guarded = new WeakSet<ClientHttp2Session>();

function ignore(): void {}

/** A session manager for `baseUrl` whose sessions' errors never go uncaught; `nodeOptions` as connect-node's. */
export class GuardedSessionManager extends Http2SessionManager {
  override async request(...args: Parameters<Http2SessionManager["request"]>): Promise<ClientHttp2Stream> {
    const stream = await super.request(...args);
    // Before any of the peer's bytes are read: those come in a later turn of the event loop.
    const session = stream.session;
    if (session !== undefined && !guarded.has(session)) {
      guarded.add(session);
      session.on("error", ignore);
    }
    return stream;
  }
}
