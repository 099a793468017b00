/**
 * TLS failures said with what to do. connect-es reports them as the
 * runtime's transport error, e.g. "[internal] self-signed certificate" for a
 * server certificate the client does not trust and "[aborted] socket hang
 * up" for http:// to a server that speaks only TLS, which name neither the
 * setting nor the fix (gRPC's "[canceled] http/2 stream closed with error
 * code CANCEL" there is said first by _guarded-sessions.ts). The SDK's own
 * transport explains them (explainTlsFailures); the CLI words the same
 * explanations with its flags (explainTlsFailure). Read are Node's error
 * codes (which Bun's fetch and node:https give too) and the messages of
 * Deno's fetch (rustls and hyper's, under its "fetch failed"); a browser's
 * fetch says nothing but "Failed to fetch", and passes as it is.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/** How the caller sets a CA to trust, for explainTlsFailure's words. */
export interface TlsAdvice {
  /** Where a CA to trust goes, as the fix names it: e.g. "--ca FILE or TASKWIRE_CA", or "tls: { ca }". */
  readonly caSetting: string;
  /** The CA the client was given, as the message names it (e.g. "--ca: /etc/ca.pem"), when one was. */
  readonly caGiven?: string | undefined;
}

// Certificate checks that fail (Node's error codes): the server's certificate is not one this client trusts.
const UNTRUSTED =
  /^(?:DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(?:_LOCALLY)?)$/;
// The same from rustls (Deno's fetch): a CA it does not trust, or a self-signed server certificate made as a CA's.
const UNTRUSTED_RUSTLS = /invalid peer certificate: (?:UnknownIssuer|CaUsedAsEndEntity)\b/;
const WRONG_NAME_RUSTLS = /invalid peer certificate: (?:NotValidForName|certificate not valid for name)/;
// What https:// to a plaintext server looks like from OpenSSL: the "TLS record" it read is an HTTP response
// (rustls: a record of no TLS content type).
const NOT_TLS =
  /wrong version number|packet length too long|ERR_SSL_WRONG_VERSION_NUMBER|EPROTO|received corrupt message of type InvalidContentType/;
// A server that closed the connection without answering (hyper's words, under Deno's fetch, for the same).
const HUNG_UP = /socket hang up|ECONNRESET|connection closed before message completed/;

/**
 * What the SDK's gRPC transport on Node says of an HTTP/2 connection the server closed without sending a byte
 * (_guarded-sessions.ts): an HTTP/2 server's first bytes are its SETTINGS, sent as it accepts; Node's TLS server,
 * given plaintext, closes without a word.
 */
export const SERVER_SENT_NOTHING =
  "the server closed the connection without sending a byte of HTTP/2 (no SETTINGS frame)";

/** The error codes and messages down `err`'s cause chain (a ConnectError's numeric code is no Node code). */
function causes(err: unknown): { codes: string[]; messages: string[] } {
  const codes: string[] = [], messages: string[] = [];
  for (let e = err, depth = 0; depth < 6 && e instanceof Error; depth++, e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") codes.push(code);
    messages.push(e instanceof ConnectError ? e.rawMessage : e.message);
  }
  return { codes, messages };
}

// The subjectAltName of the certificate a TLS name check refused (Node's error carries the certificate), if any.
function altNames(err: unknown): string | undefined {
  for (let e = err, depth = 0; depth < 6 && e instanceof Error; depth++, e = e.cause) {
    const san = (e as { cert?: { subjectaltname?: unknown } }).cert?.subjectaltname;
    if (typeof san === "string") return san === "" ? "no altnames" : san;
  }
  return undefined;
}

/**
 * What went wrong, with what to do, when `err` (a call's error, or anything
 * down its cause chain) is a TLS failure of a client of `url`: a certificate
 * it does not trust, one for another name or out of its dates, https:// to a
 * server that speaks plain HTTP, or http:// to one that speaks only TLS (it
 * hangs up on a plaintext request; to gRPC, it closes without a byte).
 * Undefined for any other error. For tools that wrap the SDK and set its
 * `tls` from settings of their own: `advice` names those; the SDK's client
 * already throws these words with its own.
 */
export function explainTlsFailure(err: unknown, url: string, advice: TlsAdvice): string | undefined {
  const { codes, messages } = causes(err);
  // The innermost message is the transport's own; outer ones may be an explanation already given.
  const first = transportWords(messages.findLast((m) => m !== "") ?? "");
  const https = /^https:/i.test(url);
  if (https) return httpsFailure(err, { url, codes, messages, first }, advice);
  if (err instanceof ConnectError && HUNG_UP.test([...codes, ...messages].join(" "))) {
    return `${url} hung up on a plaintext request: if that server serves TLS (--tls-cert), use https:// (and ${advice.caSetting} for a self-signed certificate); else ${first}`;
  }
  if (err instanceof ConnectError && messages.includes(SERVER_SENT_NOTHING)) {
    return `${url} closed the connection without a byte of HTTP/2: if that server serves TLS (--tls-cert), use https:// (and ${advice.caSetting} for a self-signed certificate); else it is no HTTP/2 server, or it refused the connection`;
  }
  return undefined;
}

// The transport's message without the runtime's framing: Deno's request and URL before hyper's or rustls's words,
// Bun's pointer to its fetch's `verbose` option after them.
function transportWords(message: string): string {
  return message.replace(/^error sending request .*?: client error \([^)]*\): /, "")
    .replace(/\.? For more information, pass `verbose: true` in the second argument to fetch\(\)$/, "");
}

interface Failure {
  readonly url: string;
  readonly codes: readonly string[];
  readonly messages: readonly string[];
  readonly first: string;
}

function httpsFailure(err: unknown, { url, codes, messages, first }: Failure, advice: TlsAdvice): string | undefined {
  // A trusted certificate for another name, or out of its dates: another CA would not help.
  if (codes.includes("ERR_TLS_CERT_ALTNAME_INVALID") || messages.some((m) => WRONG_NAME_RUSTLS.test(m))) {
    // Node's message lists only the altnames of the kind asked for (an IP's list is empty for a DNS-only certificate).
    const held = altNames(err);
    return `the TLS certificate of ${url} is not for that name: ${first}; connect by a name or address it holds (${
      held === undefined ? "its altnames" : `it holds ${held}`
    }), or give the server a certificate for this one (--tls-cert)`;
  }
  if (codes.some((c) => c === "CERT_HAS_EXPIRED" || c === "CERT_NOT_YET_VALID")) {
    return `cannot trust the TLS certificate of ${url}: ${first}; the server needs a certificate valid now (--tls-cert), or this machine's clock is wrong`;
  }
  if (codes.some((c) => UNTRUSTED.test(c)) || messages.some((m) => UNTRUSTED_RUSTLS.test(m))) {
    // A CA was given and did not sign it: "pass a CA" alone would send the user to the setting they already used.
    const given = advice.caGiven === undefined ? "" : `the CA given (${advice.caGiven}) did not sign it; `;
    return `cannot trust the TLS certificate of ${url}: ${first}; ${given}pass the CA that signed it (for a self-signed server, its certificate) with ${advice.caSetting}`;
  }
  if ([...codes, ...messages].some((m) => NOT_TLS.test(m))) {
    return `${url} does not answer TLS (${
      codes.find((c) => NOT_TLS.test(c)) ?? "not a TLS record"
    }): a server without --tls-cert speaks plain HTTP; use http://`;
  }
  return undefined;
}

/**
 * An interceptor of the SDK's own transport that throws a TLS failure of a
 * call to `url` as a ConnectError that says what to do (explainTlsFailure,
 * in the SDK's words), with the same code and connect-es's error as its
 * cause. A stream's connection fails before its first message, so within
 * the interceptor, as a unary call's does.
 */
export function explainTlsFailures(url: string, advice: TlsAdvice): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      // A fetch transport's error passes the interceptors as fetch threw it (a TypeError); connect-es makes it the
      // same ConnectError after them.
      const from = ConnectError.from(err);
      const why = explainTlsFailure(from, url, advice);
      if (why === undefined) throw err;
      throw new ConnectError(why, from.code, from.metadata, undefined, from);
    }
  };
}

/** Where the SDK on Node takes a CA to trust, for explainTlsFailures; `given`: whether it was given one. */
export function nodeTlsAdvice(given: boolean): TlsAdvice {
  return { caSetting: "tls: { ca } (the PEM text of the CA's certificate)", caGiven: given ? "tls.ca" : undefined };
}

/**
 * Where the SDK over fetch (mod.ts) takes a CA to trust: the runtime's own trust settings, as `tls` is the Node
 * entry's. Deno and Bun read a CA's file from their environment; a browser trusts what its system does.
 */
export function fetchTlsAdvice(): TlsAdvice {
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  if (g.Deno !== undefined) return { caSetting: "DENO_CERT=FILE or deno run --cert FILE" };
  if (g.Bun !== undefined) return { caSetting: "NODE_EXTRA_CA_CERTS=FILE in Bun's environment" };
  return { caSetting: "the system's or browser's trust store" };
}

/**
 * A taskwire server takes gRPC over HTTP/2 on Node only. On Deno it answers
 * HTTP 415 with a body that says so, which connect-es's gRPC transport drops
 * ("[unknown] HTTP 415"); Bun's server, like any HTTP/1.1-only server or
 * proxy, does not take HTTP/2 without TLS at all ("[internal] Protocol
 * error"). Either error says what to use instead, connect-es's as its cause.
 */
export const explainRefusedGrpc: Interceptor = (next) => async (req) => {
  try {
    return await next(req);
  } catch (err) {
    const why = err instanceof ConnectError ? grpcRefusal(err) : undefined;
    if (why === undefined || !(err instanceof ConnectError)) throw err;
    throw new ConnectError(
      `${why}: a taskwire server takes gRPC over HTTP/2 when it runs on Node; against one on Deno or Bun, or ` +
        'behind an HTTP/1.1 proxy, use protocol "connect" (the default) or "grpc-web"',
      err.code,
      err.metadata,
      undefined,
      err,
    );
  }
};

// What connect-es's error of a gRPC call says of a server that does not take gRPC; undefined for any other error.
function grpcRefusal(err: ConnectError): string | undefined {
  if (err.rawMessage === "HTTP 415") return "the server refused gRPC (HTTP 415)";
  if (err.code === Code.Internal && err.rawMessage === "Protocol error") {
    return "the server did not take gRPC's HTTP/2 (a protocol error)";
  }
  return undefined;
}
