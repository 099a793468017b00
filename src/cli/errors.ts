/**
 * Errors the CLI reports, in one format (`taskwire: <what happened>` on
 * stderr, no stack), and the exit status of each: 0 ok, 1 a runtime error
 * (the server is unreachable, a task is gone, the server failed), 2 a usage
 * error (a bad flag or value, including one the server rejected as
 * INVALID_ARGUMENT or OUT_OF_RANGE: the request built from the arguments).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { explainTlsFailure } from "@taskwire/client";
import { CommanderError } from "commander";
import { escapeControls } from "../log/logger.ts";

/** A usage problem (a bad flag, a file that cannot be read): exit status 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** The server could not be reached (never answered): exit status 1, said with the URL and the cause. */
export class UnreachableError extends Error {
  override readonly name = "UnreachableError";
  /** `url`: the server tried; `cause`: the transport's error. */
  constructor(readonly url: string, cause: unknown) {
    super(`cannot reach a taskwire server at ${url}: ${causeOf(cause)}`, { cause });
  }
}

const NETWORK =
  /ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EPIPE|fetch failed|socket hang up/i;
const USAGE_CODES = new Set([Code.InvalidArgument, Code.OutOfRange]);

/** The transport-level cause of a failed call, e.g. "connect ECONNREFUSED 127.0.0.1:1". */
export function causeOf(err: unknown): string {
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e instanceof Error; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && NETWORK.test(code)) return `${e.message || code}`;
    if (e.cause === undefined) break;
    e = e.cause;
  }
  return err instanceof ConnectError ? err.rawMessage : err instanceof Error ? err.message : String(err);
}

/**
 * True when `err` says no server answered at all (refused, unreachable, reset before a reply). A bare HTTP status
 * is an answer, if not a taskwire server's: connect-es reads 502, 503 and 504 as UNAVAILABLE too.
 */
export function isUnreachable(err: unknown): boolean {
  if (!(err instanceof ConnectError) || bareStatus(err) !== undefined) return false;
  return err.code === Code.Unavailable || NETWORK.test(causeOf(err));
}

// The status of a bare HTTP answer (no RPC status in it), as connect-es words it: "HTTP 503".
function bareStatus(err: unknown): string | undefined {
  return err instanceof ConnectError ? /^HTTP (\d{3})$/.exec(err.rawMessage)?.[1] : undefined;
}

// What a bare status from a proxy in front of a server says, where it says more than "something else answered".
const PROXY_STATUS: Record<string, string> = {
  "429": "too many requests: a proxy or gateway in front of the server limits this client; wait, then try again",
  "502": "a proxy or gateway that could not get an answer from the server behind it",
  "503": "a proxy or gateway whose server behind it is down or overloaded, or another service",
  "504": "a proxy or gateway that timed out waiting for the server behind it",
};

/** What the CLI knows of the connection an error came from, beside its URL (connection.ts). */
export interface ConnectionFacts {
  /** The TLS files given that an http:// URL left unused (connection.ts lastConnection). */
  readonly unusedTls?: readonly string[];
  /** The --ca file the client trusted, if any. */
  readonly ca?: string | undefined;
}

/** The one line the CLI prints for `err` (without the "taskwire: " prefix), escaped for the terminal. */
export function describeError(err: unknown, url: string | undefined, facts: ConnectionFacts = {}): string {
  if (err instanceof ExitStatus) return "";
  const unusedTls = facts.unusedTls ?? [];
  const tls = url === undefined ? undefined : explainTlsFailure(err, url, {
    caSetting: "--ca FILE or TASKWIRE_CA",
    caGiven: facts.ca === undefined ? undefined : `--ca or TASKWIRE_CA: ${facts.ca}`,
  });
  if (tls !== undefined) return escapeControls(tls);
  if (err instanceof ConnectError && url !== undefined && isUnreachable(err)) {
    return describeError(new UnreachableError(url, err), url);
  }
  if (err instanceof UnreachableError) {
    return escapeControls(
      `${err.message}; is \`taskwire serve\` running there? Point at it with --url or TASKWIRE_URL`,
    );
  }
  const status = bareStatus(err);
  const server = url ?? "the server";
  if (status === "403") {
    // Refused before any RPC ran: the server's Host check (DNS-rebinding protection) answers a plain 403.
    return escapeControls(
      `PermissionDenied: HTTP 403 from ${server}: a taskwire server answers so to a host name it does not take (its Host check); use an address or name the server answers to (127.0.0.1 locally, its hostname or address remotely), or have its operator add --allowed-host. If the URL is not a taskwire server's, another service or a proxy refused the call`,
    );
  }
  if (status === "404") {
    // A taskwire server answers a bare 404 to a method it does not have: an older server, or another service.
    return escapeControls(
      `${server} answered HTTP 404 to this call: a taskwire server older than this client (without the method; \`taskwire info\` shows its version), or another service at that URL; point --url at a current taskwire server`,
    );
  }
  const proxy = status === undefined ? undefined : PROXY_STATUS[status];
  if (proxy !== undefined) {
    return escapeControls(
      `${server} answered HTTP ${status} (${proxy}); check that \`taskwire serve\` runs behind it, or point --url or TASKWIRE_URL at the server itself`,
    );
  }
  if (status !== undefined) {
    // A bare HTTP status where a taskwire server answers with an RPC status: something else answered.
    return escapeControls(
      `${server} answered HTTP ${status}, not as a taskwire server answers; is \`taskwire serve\` running there (not another service or a proxy's error page)? Point at it with --url or TASKWIRE_URL`,
    );
  }
  if (err instanceof ConnectError) {
    // A client certificate goes only over TLS: with an http:// URL, --cert was never presented.
    const unused = err.code === Code.Unauthenticated && unusedTls.includes("--cert")
      ? `; ${unusedTls.join(", ")} ${
        unusedTls.length === 1 ? "was" : "were"
      } not used: a client certificate is presented only over https://, and this URL is http:// (a server with --tls-cert takes https://)`
      : "";
    return escapeControls(`${Code[err.code]}: ${err.rawMessage}${unused}`);
  }
  return escapeControls(err instanceof Error ? err.message : String(err));
}

/** A failure with an exit status of its own (e.g. 127: a command that could not be found), said as its message. */
export class FailureStatus extends Error {
  override readonly name = "FailureStatus";
  /** `code`: the process's exit status. */
  constructor(message: string, readonly code: number) {
    super(message);
  }
}

/** The exit status for `err`: 2 for usage errors (commander's own included), else 1. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof ExitStatus || err instanceof FailureStatus) return err.code;
  if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
  if (err instanceof UsageError) return 2;
  if (err instanceof RangeError) return 2; // the SDK's "bad argument" (a TypeError may be a bug: 1)
  if (err instanceof ConnectError && USAGE_CODES.has(err.code)) return 2;
  return 1;
}

/** Not an error: the status a command wants to exit with (`run` passes its command's on). Printed as nothing. */
export class ExitStatus extends Error {
  override readonly name = "ExitStatus";
  /** `code`: the process's exit status. */
  constructor(readonly code: number) {
    super(`exit status ${code}`);
  }
}
