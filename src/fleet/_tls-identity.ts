/**
 * What a NATS server's TLS certificate is checked against. nats.js reads the
 * server's INFO on a plain socket, then upgrades it (tls.connect({ socket }))
 * naming no host, and for a server given by IP address no servername either
 * (SNI takes no IP). Node and Deno then check the certificate against their
 * last fallback, "localhost", whatever address was connected to: a
 * certificate for the IP is refused ("Host: localhost. is not cert's CN"),
 * and one for localhost is taken from any address. (Bun checks the IP.)
 * Given to nats.js as tls.checkServerIdentity, this checks the address
 * connected to instead, as the Go client does, and a refusal says what the
 * certificate lacks. The SDK has the same check (clients/ts/src/_nats-tls.ts).
 */
import { isIP } from "node:net";
import { checkServerIdentity, type PeerCertificate } from "node:tls";

/** What tls.connect calls checkServerIdentity on: its options, the socket it upgrades among them. */
export interface UpgradedSocket {
  readonly servername?: string | undefined;
  readonly host?: string | undefined;
  readonly socket?: { readonly remoteAddress?: string | undefined } | undefined;
}

/** tls.checkServerIdentity for NATS connections (see above); `this` is tls.connect's options, when given. */
export function checkNatsServerIdentity(
  this: UpgradedSocket | undefined,
  host: string,
  cert: PeerCertificate,
): Error | undefined {
  const names = namesToCheck(this, host);
  if (names.length === 0) return new Error(UNKNOWN_PEER);
  let refused: Error | undefined;
  for (const name of names) {
    const err = checkServerIdentity(name, cert);
    if (err === undefined) return undefined;
    refused ??= err;
  }
  return refusal(refused!, names[0]!, cert);
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
  if (isIP(peer) === 0) return [host];
  const names = [peer];
  if (isLoopback(peer)) names.push("localhost");
  // Node's "localhost" is its fallback, not a name it dialled: the loopback rule above covers a dialled localhost.
  if (isIP(host) === 0 && host !== "localhost") names.push(host);
  return names;
}

/** Why a certificate is refused when the address connected to cannot be read. */
export const UNKNOWN_PEER = "the server's TLS certificate cannot be checked: the address connected to is unknown " +
  "(the connection closed during the TLS handshake)";

function isLoopback(ip: string): boolean {
  return /^(::ffff:)?127\./i.test(ip) || ip === "::1";
}

// Node's words ("Host: localhost. is not cert's CN: nats-1") name neither the address nor the fix.
function refusal(err: Error, name: string, cert: PeerCertificate): Error {
  const holds = cert.subjectaltname || (cert.subject?.CN ? `no subjectAltName, CN ${cert.subject.CN}` : "nothing");
  const [what, san] = isIP(name) !== 0 ? ["address", `IP:${name}`] : ["host", `DNS:${name}`];
  err.message = `the server's TLS certificate is not for ${name}, the ${what} connected to (it holds ${holds}): ` +
    `add subjectAltName ${san} to the certificate, or connect to a name or address it holds`;
  return err;
}
