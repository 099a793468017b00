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
 * A limit per session alone is split by opening more: 200 loopback sessions each resetting 90 streams a second
 * (18,000 a second, each session under its limit) stalled the event loop for 3.9 s. So all the sessions from one
 * address (addressBucket: loopback as one, an IPv6 /64 as one) also share a bucket, `perAddressPerSecond` a
 * second with bursts of twice that; a session whose reset finds it empty is closed the same way, and the
 * address's new connections are refused for 2 s (barred). An address's bucket outlives its sessions until it
 * would be full again, so closing them all and reconnecting earns nothing.
 */
import { constants as h2, type Http2SecureServer, type Http2Server, type Http2Session } from "node:http2";
import type { Logger } from "@logtape/logtape";
import { taskwireLogger } from "../log/logger.ts";
import { addressBucket } from "../core/admission.ts";
import { rateLimitedWarning } from "./_transport-limits.ts";
import { remoteAddressOf, tcpUnderTls } from "./_tcp-socket.ts";

/** Why a session was destroyed (its "error", which the HTTP/2 server passes on as "sessionError"). */
export class RapidResetError extends Error {
  /** Which limit it went past. */
  readonly limit: ResetLimit;
  constructor(limit: ResetLimit, perSecond: number) {
    const who = limit === "h2-max-resets-per-second" ? "this connection" : "the connections from this address";
    super(`${who} reset more than ${perSecond} HTTP/2 streams a second; cancel fewer calls`);
    this.name = "RapidResetError";
    this.limit = limit;
  }
}

/** The two limits on resets, named as their flags are. */
export type ResetLimit = "h2-max-resets-per-second" | "h2-max-resets-per-second-per-address";

/** Options for guardResets. */
export interface ResetGuardOptions {
  /** Streams reset per second a session may keep up (bursts of twice that). */
  readonly perSecond: number;
  /** Streams reset per second all the sessions from one address (addressBucket) may keep up together. */
  readonly perAddressPerSecond: number;
  /** Told of each session closed, with the limit it went past (for /metrics). */
  readonly onClosed?: (limit: ResetLimit) => void;
  /** Told of each new connection refused while its address is barred (for /metrics). */
  readonly onRefused?: () => void;
  /** Where the warnings go; default taskwireLogger(). */
  readonly logger?: Logger;
}

/** What the guard tells the adapter. */
export interface ResetGuard {
  /** Whether `session` had a stream reset within the last second: its new requests are then paced. */
  resetRecently(session: object): boolean;
  /**
   * Whether a new connection from `address` (its TCP socket's remote address) is to be refused: the connections
   * from its address bucket went past the limit per address, and its bucket has not had time to fill up again.
   * A refusal is counted (onRefused) and said in the log at most every 10 s.
   */
  refuses(address: string): boolean;
}

/** How long after a reset a session's new requests are paced. */
const PACED_AFTER_RESET_MS = 1000;

/**
 * How long a session closed here has to let go of its connection before its TCP socket is destroyed. Over TLS, Node
 * 20 never finishes closing a session whose client has already reset the TCP connection (it waits for its TLS
 * socket's end, which never comes): every one a client flooded and then reset held its descriptor and its place
 * under --max-connections for good (437 in a 10 s flood from one client, ~45 a second), until every new connection
 * was refused, from any address. A connection still there has sent the GOAWAY and closed well before.
 */
const LET_GO_AFTER_MS = 2000;

const PER_ADDRESS = "h2-max-resets-per-second-per-address";

/** Watches every HTTP/2 session of `server`, closing those that reset streams faster than allowed. */
export function guardResets(server: Http2Server | Http2SecureServer, o: ResetGuardOptions): ResetGuard {
  const lastReset = new WeakMap<object, number>();
  const closer = closeSessions(o);
  const addresses = addressBuckets(o.perAddressPerSecond);
  server.on("session", (session: Http2Session) => {
    const take = createBucket(o.perSecond);
    const shared = addresses.enter(session);
    let closing = false;
    const reset = (): void => {
      lastReset.set(session, performance.now());
      if (closing || session.destroyed) return;
      const limit = !take() ? "h2-max-resets-per-second" : !shared.take() ? PER_ADDRESS : undefined;
      if (limit === undefined) return;
      if (limit === PER_ADDRESS) shared.bar();
      closing = true;
      // No GOAWAY from here, though nghttp2 would then ignore the new streams of the reads after this one in
      // the same poll phase (a flood of 700 streams had 569 handled, not 700): a GOAWAY queued inside the read
      // let any stream reset from its handling crash the process (_h2-end.ts).
      // Closed after the read, not from here: "aborted" runs inside nghttp2's processing of what it read, and a
      // session destroyed there (process.nextTick runs in the same callback scope) left Node's native session
      // spinning at 100% CPU, its memory growing until the process aborted with std::bad_alloc, in 3 runs of 3
      // (a session whose SubscribeExits streams had been answered, then reset). Meanwhile its new streams wait
      // in the pacer (resetRecently). Another session of the address is not closed from here either: this may
      // run inside that one's read (a stream of this session closed by what that one asked).
      setImmediate(() => closer(session, limit));
    };
    session.on("stream", (stream) => {
      // "aborted": reset before its response ended. Node emits it as nghttp2 reads the RST_STREAM, in the same
      // read as the streams after it ("close" comes a tick later: counted then, a whole read of ~800 streams
      // was served before the first was counted). A stream that came in the connection's first bytes (with the
      // preface, read before the "session" event) is reset before "stream" is emitted: it is aborted already.
      if (stream.aborted) reset();
      else stream.once("aborted", reset);
    });
  });
  return {
    resetRecently: (session) => performance.now() - (lastReset.get(session) ?? -Infinity) < PACED_AFTER_RESET_MS,
    refuses: refusals(addresses.barred, o),
  };
}

// Destroys a session with GOAWAY ENHANCE_YOUR_CALM, counting it and warning (at most every 10 s per limit).
function closeSessions(o: ResetGuardOptions): (session: Http2Session, limit: ResetLimit) => void {
  const logger = o.logger ?? taskwireLogger();
  const warner = (limit: ResetLimit, perSecond: number, what: string) =>
    rateLimitedWarning(
      logger,
      (n, peer) =>
        `closed ${n} HTTP/2 connection(s) (GOAWAY ENHANCE_YOUR_CALM): ${what} reset more than ${perSecond} streams a second, the limit (--${limit}), the last from ${peer}; raise it if clients legitimately cancel that many calls`,
    );
  const warn = {
    "h2-max-resets-per-second": warner("h2-max-resets-per-second", o.perSecond, "each"),
    "h2-max-resets-per-second-per-address": warner(
      "h2-max-resets-per-second-per-address",
      o.perAddressPerSecond,
      "the connections from their address together",
    ),
  };
  return (session, limit) => {
    if (session.destroyed) return;
    // Read now: a destroyed session's socket is gone (reading through it then throws).
    const peer = peerAddress(session);
    const tcp = tcpUnderTls(session.socket);
    const perSecond = limit === "h2-max-resets-per-second" ? o.perSecond : o.perAddressPerSecond;
    session.destroy(new RapidResetError(limit, perSecond), h2.NGHTTP2_ENHANCE_YOUR_CALM);
    if (tcp !== undefined) setTimeout(() => tcp.destroy(), LET_GO_AFTER_MS).unref();
    o.onClosed?.(limit);
    warn[limit](peer);
  };
}

// ResetGuard.refuses: checks, counts and warns.
function refusals(barred: (bucket: string) => boolean, o: ResetGuardOptions): (address: string) => boolean {
  const warn = rateLimitedWarning(
    o.logger ?? taskwireLogger(),
    (n, peer) =>
      `refused ${n} new connection(s) from addresses whose connections reset more than ${o.perAddressPerSecond} HTTP/2 streams a second together, the limit (--h2-max-resets-per-second-per-address), the last from ${peer}; such an address's new connections are refused for 2 s`,
  );
  return (address) => {
    if (!barred(addressBucket(address))) return false;
    o.onRefused?.();
    warn(address);
    return true;
  };
}

// The client's address as its TCP socket read it when it was accepted. Asked of the TLS socket, a client that sent
// its streams and reset the connection at once had none: every such session shared a bucket of its own, whose bar
// refused nobody, and the address's new connections were served.
function peerAddress(session: Http2Session): string {
  return remoteAddressOf(session.socket);
}

/** An address's shared bucket, as a session of it sees it. */
interface SharedBucket {
  /** Takes a token: false once it is empty. */
  take(): boolean;
  /** Refuses the address's new connections until the bucket could be full again. */
  bar(): void;
}

/**
 * The buckets shared by the sessions of each address. One is kept while a session from its address is open and
 * for as long after as it takes to fill up again (2 s), then forgotten: the map holds no more than the addresses
 * connected within the last 2 s.
 *
 * A session closed for the limit per address bars the address's new connections for those 2 s: each new one
 * otherwise brought a whole first read of streams (~800 in 64 KiB, HEADERS and RST_STREAM each) to be handled
 * before its first reset could close it, and 8 clients reconnecting as fast as they were closed kept the event
 * loop busy (/healthz at 12-75 answers in 6 s, against 250 without them).
 */
function addressBuckets(perSecond: number) {
  const FULL_AGAIN_MS = 2000; // a bucket of 2 * perSecond tokens, refilled at perSecond
  interface Entry {
    readonly take: () => boolean;
    sessions: number;
    barredUntil: number;
    forget?: NodeJS.Timeout;
  }
  const buckets = new Map<string, Entry>();
  const entry = (address: string): Entry => {
    let e = buckets.get(address);
    if (e === undefined) buckets.set(address, e = { take: createBucket(perSecond), sessions: 0, barredUntil: 0 });
    clearTimeout(e.forget);
    return e;
  };
  const enter = (session: Http2Session): SharedBucket => {
    const address = addressBucket(peerAddress(session));
    const e = entry(address);
    e.sessions++;
    session.once("close", () => {
      if (--e.sessions > 0) return;
      e.forget = setTimeout(() => e.sessions === 0 && buckets.delete(address), FULL_AGAIN_MS).unref();
    });
    return { take: e.take, bar: () => void (e.barredUntil = performance.now() + FULL_AGAIN_MS) };
  };
  const barred = (bucket: string): boolean => (buckets.get(bucket)?.barredUntil ?? 0) > performance.now();
  return { enter, barred };
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
