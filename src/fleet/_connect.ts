/**
 * The NATS connection of the publisher: servers, credentials (a .creds file,
 * an nkey seed file, or a token file: never a secret on the command line,
 * where `ps` shows it) and TLS, from flags to the client's options. Nothing
 * secret is ever echoed: server URLs are shown without their userinfo.
 */
import { readFileSync } from "node:fs";
import {
  type Authenticator,
  type ConnectionOptions,
  credsAuthenticator,
  type NatsConnection,
  nkeyAuthenticator,
  type TlsOptions,
  tokenAuthenticator,
} from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { checkNatsServerIdentity } from "./_tls-identity.ts";

/** How to reach and authenticate to NATS. */
export interface NatsSettings {
  /** Server URLs (nats://host:4222, tls://host:4222), comma-separated or a list. */
  readonly servers: string | readonly string[];
  /** A NATS credentials file (JWT and nkey seed, `nsc` makes them). */
  readonly credsFile?: string | undefined;
  /** A file holding an nkey user seed (SU...). */
  readonly nkeyFile?: string | undefined;
  /** A file holding a token (its first line). */
  readonly tokenFile?: string | undefined;
  /** PEM CA to verify the server with (implies TLS). */
  readonly caFile?: string | undefined;
  /** PEM client certificate and key (mutual TLS). */
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
  /** The connection's name on the server (nats-server's connz). */
  readonly name?: string | undefined;
}

/** NATS cannot be reached, or refused the credentials; the message says which and what to check. */
export class NatsConnectError extends Error {
  override readonly name = "NatsConnectError";
}

/** The servers as a list; a RangeError for one that is no nats:// or tls:// URL (host:port alone is nats://). */
export function serverList(servers: string | readonly string[]): string[] {
  const list = (typeof servers === "string" ? servers.split(",") : [...servers]).map((s) => s.trim()).filter(Boolean);
  if (list.length === 0) throw new RangeError("--nats: no server URL given; pass e.g. nats://127.0.0.1:4222");
  const whole = typeof servers === "string" ? servers : servers.join(",");
  for (const url of list) {
    const problem = urlProblem(url);
    if (problem === undefined) continue;
    // A comma in a password splits the list inside it: no part of a list that holds a password is shown.
    const shown = whole.includes("@") && !url.includes("@") ? `${schemeOf(url)}***` : redactUrl(url);
    throw new RangeError(`--nats ${JSON.stringify(shown)} ${problem}; write e.g. nats://127.0.0.1:4222`);
  }
  return list;
}

// What the NATS client would refuse only once connecting: checked here, where it is the caller's to fix.
function urlProblem(url: string): string | undefined {
  let u: URL;
  try {
    u = parseServer(url);
  } catch {
    return `is not a URL (check its host and port${
      url.includes("@") ? "; a / , @ or # in a password must be written %2F %2C %40 %23" : ""
    })`;
  }
  if (u.protocol !== "nats:" && u.protocol !== "tls:") {
    return `has the scheme ${u.protocol.slice(0, -1)}, not nats or tls`;
  }
  if (u.hostname === "") return "names no host";
  // A / in a password ends the URL's authority: the rest reads as a path, which NATS URLs have none of.
  if (u.pathname !== "" && u.pathname !== "/") return "has a path (a / or @ in a password must be written %2F, %40)";
  return undefined;
}

// A server as a URL: host:port alone is nats://.
function parseServer(server: string): URL {
  return new URL(server.includes("://") ? server : `nats://${server}`);
}

// The URL's scheme and "://", or "" (a user:password part may itself hold "://": only a real scheme is kept).
function schemeOf(url: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)?.[0] ?? "";
}

// The URL with `replacement` for its user:password part (up to its last @, which ends it); as it is without one.
function replaceUserinfo(url: string, replacement: string): string {
  const at = url.lastIndexOf("@");
  return at < 0 ? url : `${schemeOf(url)}${replacement}${url.slice(at + 1)}`;
}

/** A server URL without any user:password@ part (up to its last @, which ends it), for messages. */
export function redactUrl(url: string): string {
  return replaceUserinfo(url, "***@");
}

/**
 * The credentials the URLs carry (user:password@, or token@), which the NATS
 * client would not send: it reads none from a URL. Each URL must carry the
 * same, or none.
 */
function urlCredentials(servers: readonly string[]): { user: string; pass: string } | { token: string } | undefined {
  const found = new Set<string>();
  let credentials: { user: string; pass: string } | { token: string } | undefined;
  for (const server of servers) {
    const u = parseServer(server); // serverList checked it parses
    if (u.username === "" && u.password === "") continue;
    const user = decoded(u.username), pass = decoded(u.password);
    found.add(`${user}\n${pass}`);
    credentials = u.password === "" ? { token: user } : { user, pass };
  }
  if (found.size > 1) throw new RangeError("the --nats URLs carry different credentials: give each the same, or none");
  return credentials;
}

function decoded(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new RangeError("--nats: a URL's user or password has a % that starts no %XX escape; write a % as %25");
  }
}

// A URL as the client is given it: its credentials go as options (urlCredentials).
function withoutUserinfo(server: string): string {
  return replaceUserinfo(server, "");
}

/**
 * Connects (once: a failure is a NatsConnectError), reconnecting for ever
 * after. Bad settings (credentials given twice, half a TLS pair, a secret
 * file that cannot be read or is empty) are a RangeError, before anything
 * connects: they are the caller's to fix, not NATS's answer.
 */
export async function connectNats(s: NatsSettings): Promise<NatsConnection> {
  const servers = serverList(s.servers);
  const options = connectionOptions(s, servers);
  try {
    return await connect(options);
  } catch (err) {
    const shown = servers.map(redactUrl).join(", ");
    throw new NatsConnectError(
      `cannot connect to NATS at ${shown}: ${
        describe(err)
      }; check --nats, the credentials (--nats-creds, --nats-nkey, --nats-token-file) and TLS (--nats-ca)`,
    );
  }
}

/** Checks `s` as connectNats would, reading its secret files, without connecting; a RangeError says what is wrong. */
export function checkNatsSettings(s: NatsSettings): void {
  connectionOptions(s, serverList(s.servers));
}

function connectionOptions(s: NatsSettings, servers: string[]): ConnectionOptions {
  const authenticator = authenticatorFor(s);
  const fromUrl = urlCredentials(servers);
  if (fromUrl !== undefined && authenticator !== undefined) {
    throw new RangeError("credentials in a --nats URL and in --nats-creds, --nats-nkey or --nats-token-file: pass one");
  }
  const tls = tlsFor(s, servers);
  return {
    servers: servers.map(withoutUserinfo),
    ...fromUrl,
    name: s.name ?? "taskwire",
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    timeout: 5000,
    ...(authenticator && { authenticator }),
    ...(tls && { tls }),
  };
}

function authenticatorFor(s: NatsSettings): Authenticator | undefined {
  const given = [s.credsFile, s.nkeyFile, s.tokenFile].filter((f) => f !== undefined);
  if (given.length > 1) {
    throw new RangeError("pass one of --nats-creds, --nats-nkey and --nats-token-file, not several");
  }
  if (s.credsFile !== undefined) return credsAuthenticator(credsFile(s.credsFile));
  if (s.nkeyFile !== undefined) return nkeyAuthenticator(nkeySeed(s.nkeyFile));
  if (s.tokenFile !== undefined) {
    return tokenAuthenticator(new TextDecoder().decode(firstLine(s.tokenFile, "--nats-token-file")));
  }
  return undefined;
}

type NatsTls = TlsOptions & { checkServerIdentity: typeof checkNatsServerIdentity };

// TLS with a CA, a client certificate or a tls:// URL. nats.js reads no scheme: without tls options it takes the
// server's word on TLS, and a tls:// URL to a server without TLS was plain text.
function tlsFor(s: NatsSettings, servers: readonly string[]): NatsTls | undefined {
  if ((s.certFile === undefined) !== (s.keyFile === undefined)) {
    throw new RangeError("--nats-cert and --nats-key go together: pass both PEM files");
  }
  const tlsUrl = servers.some((url) => parseServer(url).protocol === "tls:");
  if (s.caFile === undefined && s.certFile === undefined && !tlsUrl) return undefined;
  return {
    ...(s.caFile !== undefined && { caFile: s.caFile }),
    ...(s.certFile !== undefined && { certFile: s.certFile }),
    ...(s.keyFile !== undefined && { keyFile: s.keyFile }),
    // Node's tls.connect option, which nats.js passes on: the certificate is checked against the address connected to.
    checkServerIdentity: checkNatsServerIdentity,
  };
}

// The client parses these only as it connects, and its words name no file ("unable to parse credentials").
function credsFile(file: string): Uint8Array {
  const bytes = readSecret(file, "--nats-creds");
  const text = new TextDecoder().decode(bytes);
  if (!/-----BEGIN NATS USER JWT-----/.test(text) || !/-----BEGIN USER NKEY SEED-----/.test(text)) {
    throw new RangeError(
      `--nats-creds: ${file} is not a NATS credentials file (it needs the USER JWT and USER NKEY SEED blocks \`nsc generate creds\` writes)`,
    );
  }
  return bytes;
}

function nkeySeed(file: string): Uint8Array {
  const seed = firstLine(file, "--nats-nkey");
  if (!/^SU[A-Z2-7]{56}$/.test(new TextDecoder().decode(seed))) {
    throw new RangeError(`--nats-nkey: ${file} holds no nkey user seed (a first line of 58 characters starting SU)`);
  }
  return seed;
}

function readSecret(file: string, flag: string): Uint8Array {
  if (file.trim() === "") throw new RangeError(`${flag} is empty: name the file`);
  try {
    return readFileSync(file);
  } catch (err) {
    throw new RangeError(`${flag}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`);
  }
}

function firstLine(file: string, flag: string): Uint8Array {
  // The first line that is not blank (an editor's leading empty line is no secret).
  const line =
    new TextDecoder().decode(readSecret(file, flag)).split("\n").map((l) => l.trim()).find((l) => l !== "") ?? "";
  if (line === "") throw new RangeError(`${flag}: ${file} is empty`);
  return new TextEncoder().encode(line);
}

// The client's own error says what failed (refused, authorization violation, TLS); its cause, the socket's error.
function describe(err: unknown): string {
  const e = err as { message?: string; cause?: { message?: string } };
  const cause = e.cause?.message;
  return [e.message ?? String(err), ...(cause !== undefined && cause !== e.message ? [cause] : [])].join(": ");
}

/** `text` with the user:password@ (or token@) of any URL in it replaced by ***@: an error may quote a server URL. */
export function redactText(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@"']*@/gi, "$1***@");
}
