/**
 * Admission control per principal: concurrent streams (per principal and in
 * all), a unary call rate (a token bucket per principal), and unary calls
 * under way (per principal and in all), each until its response is
 * delivered, since a response the client does not read is held in the
 * server's memory. A refusal is a
 * LimitExceededError naming the limit and the flag that sets it, raised
 * before anything is done for the call. Without authentication callers are
 * told apart by address, bucketed (addressBucket) so one host cannot
 * multiply its share by calling from many addresses.
 */
import { CallCount } from "./_call-count.ts";
import { KeyedCount } from "./keyed-count.ts";
import { LimitExceededError } from "./errors.ts";

/** Admission limits. */
export interface AdmissionLimits {
  /** Most SubscribeExits streams open at once, over all principals. */
  readonly maxStreams: number;
  /** Most streams one principal has open at once. */
  readonly maxStreamsPerPrincipal: number;
  /** Unary calls per second one principal may make, sustained. */
  readonly callsPerSecond: number;
  /** Unary calls one principal may make in a burst. */
  readonly callBurst: number;
  /**
   * Most unary calls under way at once, over all principals. A call is under
   * way from its request's arrival until its response is delivered (each
   * runtime adapter holds it as far as its runtime tells: see Admission.holdCall).
   */
  readonly maxCalls: number;
  /** Most unary calls one principal has under way at once. */
  readonly maxCallsPerPrincipal: number;
}

/** Defaults: generous for monitoring services, small enough that one client cannot crowd out the rest. */
export const DEFAULT_ADMISSION: Readonly<AdmissionLimits> = Object.freeze({
  maxStreams: 1024,
  maxStreamsPerPrincipal: 128,
  callsPerSecond: 200,
  callBurst: 400,
  // A call under way holds ~27 KB (an HTTP/2 stream's objects and its response, measured) until it is read: at twice
  // the limits (past which requests are reset unanswered), ~28 MiB for a principal and ~110 MiB in all. The limit per
  // principal is above the call burst (400), so a client that fires a burst at once is not refused for it.
  maxCalls: 2048,
  maxCallsPerPrincipal: 512,
});

/**
 * Calls under way from requests whose credentials failed (with authentication
 * on): per address bucket and in all. They are refusals, /healthz probes and
 * the dashboard's files; a host needs few at once.
 */
export const UNCREDENTIALED_CALLS: Readonly<{ perKey: number; total: number }> = Object.freeze({
  perKey: 16,
  total: 256,
});

/** The prefix of an unauthenticated caller's principal id (auth/authenticator.ts): `anonymous@<address>`. */
const ANONYMOUS = "anonymous@";

/**
 * Where an address's calls are counted when callers are told apart by
 * address only (no authentication): every loopback address (127.0.0.0/8,
 * ::1, and both as IPv4-mapped IPv6) is one caller, since any local process
 * can bind any of 2^24 of them; an IPv6 address counts by its /64, the
 * smallest prefix a host is given (RFC 4291 interface ids); an IPv4 address
 * is itself.
 */
export function addressBucket(address: string): string {
  const a = address.toLowerCase().replace(/^::ffff:(?=\d+\.)/, "");
  if (a === "::1" || /^127\.\d+\.\d+\.\d+$/.test(a) || a === "0:0:0:0:0:0:0:1") return "loopback";
  if (!a.includes(":")) return a;
  return `${expandIpv6(a).slice(0, 4).join(":")}::/64`;
}

// The eight 16-bit groups of an IPv6 address, "::" filled in (a zone, %eth0, dropped).
function expandIpv6(address: string): string[] {
  const [head = "", tail] = address.split("%", 1)[0]!.split("::", 2);
  const groups = (s: string) => (s === "" ? [] : s.split(":").map((g) => g.replace(/^0+(?=.)/, "")));
  const [h, t] = [groups(head), groups(tail ?? "")];
  const fill = tail === undefined ? [] : Array<string>(Math.max(0, 8 - h.length - t.length)).fill("0");
  return [...h, ...fill, ...t];
}

/** The key a principal's limits are counted under: itself, or for an anonymous caller its address's bucket. */
export function callerBucket(principal: string): string {
  return principal.startsWith(ANONYMOUS)
    ? `${ANONYMOUS}${addressBucket(principal.slice(ANONYMOUS.length))}`
    : principal;
}

/** The admission state. */
export interface Admission {
  readonly limits: Readonly<AdmissionLimits>;
  /** Admits a stream for `principal`; call the returned function when it ends (once). */
  enterStream(principal: string): () => void;
  /** Admits one unary call for `principal` within its rate (its calls under way are judged as it arrives: holdCall). */
  call(principal: string): void;
  /**
   * Counts a call of `caller` (a principal, or a caller bucket) as under way
   * until the returned function is called (once): a runtime adapter holds
   * each request from its arrival until its response is delivered or its
   * connection gone (a stream's until it is admitted as a stream). The call
   * itself is counted. Requests whose credentials failed (`credentialed`
   * false) are counted apart, per address bucket, in a small pool of their
   * own (UNCREDENTIALED_CALLS), so they cannot take the credentialed ones' share.
   */
  holdCall(caller: string, credentialed?: boolean): () => void;
  /** Why a new call of `caller` is refused for its calls under way (holdCall's, this one counted); else undefined. */
  callsRefusal(caller: string, credentialed?: boolean): string | undefined;
  /**
   * Whether `caller`'s calls under way (this one counted), or all of them,
   * are past twice a limit: its refusals are not being read either, and
   * answering more of them would hold as much as the calls they refuse.
   */
  callsFlooding(caller: string, credentialed?: boolean): boolean;
  /** Streams open now. */
  readonly streams: number;
}

/** Creates admission control; `now` in ms (tests pass a fake clock). */
export function createAdmission(limits: Partial<AdmissionLimits> = {}, now: () => number = Date.now): Admission {
  const l = { ...DEFAULT_ADMISSION, ...limits };
  for (const [k, v] of Object.entries(l)) {
    if (!Number.isFinite(v) || v < 1) throw new RangeError(`admission limit ${k} must be >= 1, got ${v}`);
  }
  return new _Admission(l, now);
}

interface Bucket {
  tokens: number;
  at: number;
}

// Buckets idle this long are full again and are dropped, so the map stays as small as the set of active callers.
const BUCKET_IDLE_MS = 60_000;

class _Admission implements Admission {
  readonly limits: Readonly<AdmissionLimits>;
  readonly #now: () => number;
  readonly #streams = new KeyedCount();
  readonly #buckets = new Map<string, Bucket>();
  readonly #calls: CallCount;
  readonly #uncredentialedCalls = new CallCount({
    ...UNCREDENTIALED_CALLS,
    who: "address",
    among: " from callers without valid credentials",
  });
  #swept = 0;

  constructor(limits: AdmissionLimits, now: () => number) {
    this.limits = limits;
    this.#now = now;
    this.#calls = new CallCount({
      perKey: limits.maxCallsPerPrincipal,
      total: limits.maxCalls,
      who: "principal",
      perKeyFlag: "--max-calls-in-flight-per-principal",
      totalFlag: "--max-calls-in-flight",
    });
  }

  get streams(): number {
    return this.#streams.total;
  }

  enterStream(id: string): () => void {
    const principal = callerBucket(id);
    const mine = this.#streams.of(principal);
    if (this.#streams.total >= this.limits.maxStreams) {
      throw new LimitExceededError(
        `the server has its limit of ${this.limits.maxStreams} streams open (--max-streams); retry later`,
        { retryAfterMs: 1000 },
      );
    }
    if (mine >= this.limits.maxStreamsPerPrincipal) {
      throw new LimitExceededError(
        `principal "${principal}" has its limit of ${this.limits.maxStreamsPerPrincipal} streams open (--max-streams-per-principal); close one first`,
      );
    }
    return this.#streams.hold(principal);
  }

  holdCall(caller: string, credentialed = true): () => void {
    return this.#count(credentialed).hold(callerBucket(caller));
  }

  callsRefusal(caller: string, credentialed = true): string | undefined {
    return this.#count(credentialed).refusal(callerBucket(caller));
  }

  callsFlooding(caller: string, credentialed = true): boolean {
    return this.#count(credentialed).flooding(callerBucket(caller));
  }

  #count(credentialed: boolean): CallCount {
    return credentialed ? this.#calls : this.#uncredentialedCalls;
  }

  call(id: string): void {
    const principal = callerBucket(id);
    const t = this.#now();
    this.#sweep(t);
    const { callsPerSecond: rate, callBurst: burst } = this.limits;
    const b = this.#buckets.get(principal) ?? { tokens: burst, at: t };
    b.tokens = Math.min(burst, b.tokens + ((t - b.at) / 1000) * rate);
    b.at = t;
    this.#buckets.set(principal, b);
    if (b.tokens < 1) {
      throw new LimitExceededError(
        `principal "${principal}" is over its call rate of ${rate}/s (burst ${burst}; --max-calls-per-second); slow down`,
        { retryAfterMs: ((1 - b.tokens) / rate) * 1000 },
      );
    }
    b.tokens -= 1;
  }

  #sweep(t: number): void {
    if (t - this.#swept < BUCKET_IDLE_MS) return;
    this.#swept = t;
    for (const [k, b] of this.#buckets) if (t - b.at > BUCKET_IDLE_MS) this.#buckets.delete(k);
  }
}
