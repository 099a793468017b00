/**
 * connect-node's HTTP/2 session manager, with every session it opens kept
 * from crashing the process, and a server that closed without a byte said
 * as that.
 *
 * Node emits a session's error on its streams and then on the session
 * itself; connect-node takes its listener off a session as it leaves the
 * state that had it, and a session error emitted after that had no
 * listener: an uncaught exception. A gRPC call to a server that does not
 * take HTTP/2 without TLS (Bun's, any HTTP/1.1-only server or proxy) ended
 * the calling process so, after the call itself had failed with the error.
 * The error still reaches the call (its stream's) and the manager (while it
 * listens); this listener only keeps it from being thrown.
 *
 * A server's first bytes on an HTTP/2 connection are its SETTINGS frame,
 * sent as it accepts. A server that closes the connection without having
 * sent a byte is no HTTP/2 server: a TLS server given plaintext (Node's
 * closes so, silently), or one refusing the connection. Node then closes
 * the session's streams with CANCEL, which connect-node reports as
 * "[canceled] http/2 stream closed with error code CANCEL (0x8)", as if the
 * caller had cancelled; its streams fail with an UNAVAILABLE that says what
 * happened instead (SERVER_SENT_NOTHING), which explainTlsFailure reads.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { Http2SessionManager } from "@connectrpc/connect-node";
import { SERVER_SENT_NOTHING } from "./_transport-failures.ts";

// node:http2's, as connect-node's types name them (the SDK's own build takes no Node types).
type ClientHttp2Stream = Awaited<ReturnType<Http2SessionManager["request"]>>;
type ClientHttp2Session = NonNullable<ClientHttp2Stream["session"]>;

// Each session's streams not yet closed, from the first request on it.
const sessions = new WeakMap<ClientHttp2Session, Set<ClientHttp2Stream>>();
// Sessions whose server closed without a byte: until Node closes the session, on the socket's 'close', connect-node
// may still open a stream on it (a call made as the previous one failed), which would end as a CANCEL.
const silent = new WeakSet<ClientHttp2Session>();

function ignore(): void {}

/** A session manager for `baseUrl` whose sessions' errors never go uncaught; `nodeOptions` as connect-node's. */
export class GuardedSessionManager extends Http2SessionManager {
  override async request(...args: Parameters<Http2SessionManager["request"]>): Promise<ClientHttp2Stream> {
    const stream = await super.request(...args);
    // Before any of the peer's bytes are read: those come in a later turn of the event loop.
    const session = stream.session;
    if (session !== undefined && silent.has(session)) {
      stream.close();
      throw sentNothing();
    }
    if (session !== undefined) {
      const open = sessions.get(session) ?? guard(session);
      open.add(stream);
      stream.once("close", () => open.delete(stream));
    }
    return stream;
  }
}

function guard(session: ClientHttp2Session): Set<ClientHttp2Stream> {
  const open = new Set<ClientHttp2Stream>();
  sessions.set(session, open);
  session.on("error", ignore);
  // 'end' comes before the socket's 'close', on which Node closes the streams with CANCEL.
  session.socket.once("end", () => {
    if (session.socket?.bytesRead !== 0) return;
    silent.add(session);
    for (const stream of open) stream.destroy(sentNothing());
  });
  return open;
}

// A ConnectError reaches the call as it is (connect-node would make any other error Code.Internal). UNAVAILABLE, as
// gRPC has a connection that failed before a response; watchExits retries it, as it did the CANCELED it replaces.
function sentNothing(): ConnectError {
  return new ConnectError(SERVER_SENT_NOTHING, Code.Unavailable);
}
