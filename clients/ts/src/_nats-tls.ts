/**
 * watchFleet's TLS on Node (node.ts): the NATS server's certificate checked
 * against the address connected to. nats.js reads the server's INFO on a
 * plain socket, then upgrades it (tls.connect({ socket })) naming no host,
 * and for a server given by IP address no servername either (SNI takes no
 * IP). Node and Deno then check the certificate against their last
 * fallback, "localhost", whatever address was connected to: a certificate
 * for the IP is refused ("Host: localhost. is not cert's CN"), and one for
 * localhost is taken from any address. (Bun checks the IP.) The server's
 * publisher has the same check (src/fleet/_tls-identity.ts).
 */
import type { ConnectionOptions } from "@nats-io/nats-core";

/** What of a peer certificate the check reads (node:tls's PeerCertificate; the SDK's build takes no Node types). */
interface Certificate {
  readonly subject?: { readonly CN?: string | undefined } | undefined;
  readonly subjectaltname?: string | undefined;
}

/** node:tls's checkServerIdentity. */
type Verify = (host: string, cert: Certificate) => Error | undefined;

/** What tls.connect calls checkServerIdentity on: its options, the socket it upgrades among them. */
export interface UpgradedSocket {
  readonly servername?: string | undefined;
  readonly host?: string | undefined;
  readonly socket?: { readonly remoteAddress?: string | undefined } | undefined;
}

/** A check for tls.checkServerIdentity: `verify` (node:tls's) on the names namesToCheck gives. */
export function natsServerIdentity(
  verify: Verify,
): (this: UpgradedSocket | undefined, host: string, cert: Certificate) => Error | undefined {
  return function (this: UpgradedSocket | undefined, host: string, cert: Certificate) {
    const names = namesToCheck(this, host);
    if (names.length === 0) return new Error(UNKNOWN_PEER);
    let refused: Error | undefined;
    for (const name of names) {
      const err = verify(name, cert);
      if (err === undefined) return undefined;
      refused ??= err;
    }
    return refusal(refused!, names[0]!, cert);
  };
}

/**
 * `o` with the check as its TLS's checkServerIdentity (unless it has its own), when TLS is asked for: tls options
 * or a tls:// URL (nats.js reads no scheme: without tls options a tls:// URL to a server without TLS was plain text).
 * node:tls is loaded here, on Node's entry only.
 */
export async function withServerIdentity(o: ConnectionOptions): Promise<ConnectionOptions> {
  if (o.tls === null || (o.tls === undefined && !hasTlsUrl(o.servers))) return o;
  // A specifier TypeScript does not resolve: the SDK's build takes no Node types.
  const { checkServerIdentity } = (await import("node:tls" as string)) as { checkServerIdentity: Verify };
  const tls: NonNullable<ConnectionOptions["tls"]> & { checkServerIdentity: unknown } = {
    checkServerIdentity: natsServerIdentity(checkServerIdentity),
    ...o.tls,
  };
  return { ...o, tls };
}

function hasTlsUrl(servers: ConnectionOptions["servers"]): boolean {
  const list = typeof servers === "string" ? servers.split(",") : servers ?? [];
  return list.some((s) => /^tls:\/\//i.test(s.trim()));
}

/**
 * The names a certificate may hold: `host` when nats.js chose it (servername: a URL's host name), else the
 * address connected to, a name nats.js dialled itself (Node's socket._host, unresolved), and localhost on a
 * loopback address (certificates for localhost at nats://127.0.0.1 keep working, as they did). None when the socket's
 * address cannot be read and Node fell back to "localhost": the certificate is then refused (UNKNOWN_PEER).
 */
export function namesToCheck(c: UpgradedSocket | undefined, host: string): string[] {
  const peer = c?.socket?.remoteAddress;
  if (c?.servername || c?.host) return [host];
  // A socket whose address cannot be read (it closed under the handshake): Node's fallback "localhost" names nothing
  // connected to, and taken as is would let a certificate for localhost through from any address.
  if (peer === undefined) return c?.socket !== undefined && host === "localhost" ? [] : [host];
  if (!isIp(peer)) return [host];
  const names = [peer];
  if (isLoopback(peer)) names.push("localhost");
  // Node's "localhost" is its fallback, not a name it dialled: the loopback rule above covers a dialled localhost.
  if (!isIp(host) && host !== "localhost") names.push(host);
  return names;
}

// An IPv4 or IPv6 address, as a socket's remoteAddress or nats.js's host is one: no host name has a ":" or is
// four numbers.
function isIp(s: string): boolean {
  return s.includes(":") || /^\d{1,3}(\.\d{1,3}){3}$/.test(s);
}

/** Why a certificate is refused when the address connected to cannot be read. */
export const UNKNOWN_PEER = "the server's TLS certificate cannot be checked: the address connected to is unknown " +
  "(the connection closed during the TLS handshake)";

function isLoopback(ip: string): boolean {
  return /^(::ffff:)?127\./i.test(ip) || ip === "::1";
}

// Node's words ("Host: localhost. is not cert's CN: nats-1") name neither the address nor the fix.
function refusal(err: Error, name: string, cert: Certificate): Error {
  const holds = cert.subjectaltname || (cert.subject?.CN ? `no subjectAltName, CN ${cert.subject.CN}` : "nothing");
  const [what, san] = isIp(name) ? ["address", `IP:${name}`] : ["host", `DNS:${name}`];
  err.message = `the server's TLS certificate is not for ${name}, the ${what} connected to (it holds ${holds}): ` +
    `add subjectAltName ${san} to the certificate, or connect to a name or address it holds`;
  return err;
}
