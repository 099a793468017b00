/**
 * Ending HTTP/2 sessions and refusing streams around a use-after-free in Node 20's http2 that any client can reach.
 *
 * Node resets a stream with any code but CANCEL at once (src/node_http2.cc Http2Stream::SubmitRstStream), flushing
 * what nghttp2 has queued (SendPendingData), even while inside nghttp2's processing of a read. If a GOAWAY is queued
 * then, sending it makes nghttp2 close every stream above the GOAWAY's last stream id, the one being reset among
 * them: Node frees it, goes back to resetting it, and nghttp2 goes on with the read over freed memory. Three ways
 * in, each a client's HEADERS read after a GOAWAY was queued and before it was sent:
 * - Node's own: a session closed with session.close() (a GOAWAY, and `closed` set) refuses such a stream with
 *   REFUSED_STREAM from inside the read (lib/internal/http2/core.js onSessionHeaders).
 * - Node closes a session so itself, from inside the read, when its client sends a GOAWAY (NO_ERROR; onGoawayData):
 *   GOAWAY then HEADERS in one write crashed a bare Node 20 HTTP/2 server, and taskwire, within 23-39 connections.
 * - The server's: a stream refused or reset from its handling (which runs inside the read: "stream" and "request"
 *   are emitted by process.nextTick there), with a GOAWAY queued before. 50-200 loopback connections sending GetInfo
 *   requests without credentials (each answered, then its session closed) or past the calls a caller may have
 *   under way (each refused) crashed taskwire in most runs of 5 s ("malloc(): mismatching next->prev_size", SIGSEGV).
 *
 * So no session is ever closed with Node's session.close(): endSessions replaces each session's with `end`, which
 * sends a GOAWAY alone (`closed` stays false, so Node refuses nothing itself) outside any read and destroys the
 * session once it has no stream left; and refuseStream resets a stream with a code other than CANCEL only outside
 * nghttp2's read (a CANCEL inside it Node defers itself).
 */
import { constants as h2, type Http2SecureServer, type Http2Server, type Http2Session } from "node:http2";
import type { ServerHttp2Stream } from "node:http2";

/** Ends a session gracefully: GOAWAY (its streams so far let finish), then destroyed once none is left open. */
export type EndSession = (session: Http2Session) => void;

/**
 * Counts each session's open streams on `server`, and gives what ends a session of it (EndSession). Each session's
 * own close() is that too: Node calls it from inside the read in which a client's GOAWAY (NO_ERROR) comes
 * (lib/internal/http2/core.js onGoawayData), and a client writing GOAWAY then HEADERS in one write crashed a bare
 * Node 20 HTTP/2 server, and taskwire, within 23-39 connections.
 */
export function endSessions(server: Http2Server | Http2SecureServer): EndSession {
  const open = new WeakMap<Http2Session, number>();
  const ending = new WeakSet<Http2Session>();
  // Checked again as it runs: a stream whose "stream" event was still on its way when the session began ending.
  const destroyIfIdle = (session: Http2Session): void =>
    void setImmediate(() => {
      if (!session.destroyed && (open.get(session) ?? 0) === 0) session.destroy();
    });
  const end: EndSession = (session) => {
    if (session.destroyed || session.closed || ending.has(session)) return;
    ending.add(session);
    // Queued outside any read, and sent after it (or at the end of the next read).
    setImmediate(() => {
      if (session.destroyed) return;
      session.goaway(h2.NGHTTP2_NO_ERROR);
      if ((open.get(session) ?? 0) === 0) destroyIfIdle(session);
    });
  };
  server.on("session", (session: Http2Session) => {
    open.set(session, 0);
    session.close = (callback?: () => void): void => {
      if (callback !== undefined) session.once("close", callback);
      end(session);
    };
    session.on("stream", (stream: ServerHttp2Stream) => {
      open.set(session, (open.get(session) ?? 0) + 1);
      stream.once("close", () => {
        const left = (open.get(session) ?? 1) - 1;
        open.set(session, left);
        if (left === 0 && ending.has(session)) destroyIfIdle(session);
      });
    });
  });
  return end;
}

/** Resets `stream` with `code` (not CANCEL) outside nghttp2's read: a turn later if the stream is still open. */
export function refuseStream(stream: ServerHttp2Stream, code: number): void {
  setImmediate(() => {
    if (!stream.destroyed && !stream.closed) stream.close(code);
  });
}
