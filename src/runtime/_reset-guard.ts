/**
 * Bounds the streams one HTTP/2 connection may have reset (CVE-2023-44487, "rapid reset"). A client can open a
 * stream and cancel it at once, for ever: its own count of open streams stays near zero, so
 * SETTINGS_MAX_CONCURRENT_STREAMS never stops it, and each stream still costs the server its routing and
 * handling. One h2c session doing that with 100 streams at a time (~75,000 streams in 5 s) stalled the event loop
 * for 3.5-11.9 s. nghttp2's own limit (a GOAWAY past 1,000 resets) is sent only after the frames already read,
 * and the kernel's buffers hold tens of thousands more streams: every one was still served. So each session
 * has a token bucket of streams reset (by either side) before their response ended: `perSecond` a second, bursts
 * of twice that. Past it the session is destroyed with a GOAWAY (ENHANCE_YOUR_CALM), which drops whatever it
 * has sent and not yet been read. That alone still let ~400 streams be routed as they arrived (stalls up to
 * 1.3 s), so the adapter also paces the new requests of a session that has just reset one (resetRecently).
 */
import { constants as h2, type Http2SecureServer, type Http2Server, type Http2Session } from "node:http2";
import type { Logger } from "@logtape/logtape";
import { taskwireLogger } from "../log/logger.ts";
import { rateLimitedWarning } from "./_transport-limits.ts";

/** Why a session was destroyed (its "error", which the HTTP/2 server passes on as "sessionError"). */
export class RapidResetError extends Error {
  constructor(perSecond: number) {
    super(`this connection reset more than ${perSecond} HTTP/2 streams a second; cancel fewer calls`);
    this.name = "RapidResetError";
  }
}

/** Options for guardResets. */
export interface ResetGuardOptions {
  /** Streams reset per second a session may keep up (bursts of twice that). */
  readonly perSecond: number;
  /** Told of each session closed (for /metrics). */
  readonly onClosed?: () => void;
  /** Where the warnings go; default taskwireLogger(). */
  readonly logger?: Logger;
}

/** What the guard tells the adapter. */
export interface ResetGuard {
  /** Whether `session` had a stream reset within the last second: its new requests are then paced. */
  resetRecently(session: object): boolean;
}

/** How long after a reset a session's new requests are paced. */
const PACED_AFTER_RESET_MS = 1000;

/** Watches every HTTP/2 session of `server`, closing those that reset streams faster than allowed. */
export function guardResets(server: Http2Server | Http2SecureServer, o: ResetGuardOptions): ResetGuard {
  const lastReset = new WeakMap<object, number>();
  const warn = rateLimitedWarning(
    o.logger ?? taskwireLogger(),
    (n, peer) =>
      `closed ${n} HTTP/2 connection(s) (GOAWAY ENHANCE_YOUR_CALM) that reset more than ${o.perSecond} streams a second, the limit (--h2-max-resets-per-second), the last from ${peer}; raise it if a client legitimately cancels that many calls`,
  );
  server.on("session", (session: Http2Session) => {
    const take = createBucket(o.perSecond);
    let closing = false;
    const close = (): void => {
      if (session.destroyed) return;
      const peer = session.socket?.remoteAddress ?? "";
      session.destroy(new RapidResetError(o.perSecond), h2.NGHTTP2_ENHANCE_YOUR_CALM);
      o.onClosed?.();
      warn(peer);
    };
    session.on("stream", (stream) => {
      // "aborted": reset before its response ended. Node emits it as nghttp2 reads the RST_STREAM, in the same
      // read as the streams after it ("close" comes a tick later: counted then, a whole read of ~800 streams
      // was served before the first was counted).
      stream.once("aborted", () => {
        lastReset.set(session, performance.now());
        if (take() || closing || session.destroyed) return;
        closing = true;
        // Closed after the read, not from here: "aborted" runs inside nghttp2's processing of what it read, and
        // a session destroyed there (process.nextTick runs in the same callback scope) left Node's native
        // session spinning at 100% CPU, its memory growing until the process aborted with std::bad_alloc, in 3
        // runs of 3 (a session whose SubscribeExits streams had been answered, then reset). Meanwhile its
        // new streams wait in the pacer (resetRecently).
        setImmediate(close);
      });
    });
  });
  return {
    resetRecently: (session) => performance.now() - (lastReset.get(session) ?? -Infinity) < PACED_AFTER_RESET_MS,
  };
}

// A token bucket of 2 * perSecond tokens, refilled at perSecond: take() is false once it is empty.
function createBucket(perSecond: number): () => boolean {
  const burst = 2 * perSecond;
  let tokens = burst;
  let last = performance.now();
  return () => {
    const now = performance.now();
    tokens = Math.min(burst, tokens + (now - last) * perSecond / 1000);
    last = now;
    if (tokens < 1) return false;
    tokens--;
    return true;
  };
}
