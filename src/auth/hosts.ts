/**
 * DNS rebinding: a web page on evil.example can make a browser resolve its
 * own name to the server's address (127.0.0.1, or a LAN address) and then
 * reach the server as a "same origin". Such requests still carry the
 * attacker's name in Host, so a server that relies on where it listens
 * rather than on credentials answers only to its own names: loopback names,
 * the address it is bound to, this machine's hostname and addresses, and
 * the names it was given.
 */
import { readFileSync } from "node:fs";
import { hostname as osHostname, networkInterfaces } from "node:os";

const LOOPBACK_NAMES = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

/** The host part of a Host header or :authority ("name:port", "[v6]:port"), lowercased, without a trailing dot. */
export function hostName(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(0, h.indexOf("]") + 1);
  const colon = h.lastIndexOf(":");
  return (colon === -1 ? h : h.slice(0, colon)).replace(/\.$/, "");
}

/** A name as a Host header carries it: an IPv6 address in brackets, lowercased. */
function asHostName(name: string): string {
  const n = name.trim().toLowerCase();
  return n.includes(":") && !n.startsWith("[") ? `[${n.split("%", 1)[0]}]` : hostName(n);
}

/** The names a server answers to besides loopback's and the ones it was given. */
export interface OwnNames {
  /** The address it is bound to (a wildcard, 0.0.0.0 or ::, names nothing). */
  readonly bind?: string | undefined;
  /** This machine's hostname and interface addresses (default: read from the OS). */
  readonly machine?: readonly string[] | undefined;
}

/**
 * This machine's names: its hostname, the addresses of its interfaces, and
 * the names /etc/hosts gives those addresses or loopback ones (Debian puts
 * the fully qualified name on 127.0.1.1 there).
 */
export function machineNames(hostsFile = "/etc/hosts"): string[] {
  const addresses = Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address));
  const local = new Set(addresses.map((a) => a.split("%", 1)[0]!.toLowerCase()));
  return [osHostname(), ...addresses, ...namesIn(hostsFile, (a) => local.has(a) || isLoopbackAddress(a))];
}

// hosts(5): an address, then its names; "#" starts a comment. A missing file gives none.
function namesIn(file: string, mine: (address: string) => boolean): string[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return [];
  }
  return text.split("\n").flatMap((line) => {
    const [address, ...names] = line.replace(/#.*/, "").trim().split(/\s+/);
    return address !== undefined && mine(address.toLowerCase()) ? names : [];
  }).slice(0, 256);
}

/**
 * A check of Host headers: loopback names (127.0.0.0/8, localhost and
 * *.localhost, ::1), `extra` names, and with `own` the bind address and
 * this machine's names.
 */
export function createHostCheck(
  extra: readonly string[] = [],
  own?: OwnNames,
): (header: string | null | undefined) => boolean {
  const wildcard = own?.bind === undefined || own.bind === "0.0.0.0" || own.bind === "::";
  const mine = own === undefined ? [] : [...(wildcard ? [] : [own.bind!]), ...(own.machine ?? machineNames())];
  const names = new Set([...extra, ...mine].filter((n) => n !== "").map(asHostName));
  return (header) => {
    if (header == null || header === "") return false;
    const name = hostName(header);
    return LOOPBACK_NAMES.has(name) || /^127(\.\d{1,3}){3}$/.test(name) || name.endsWith(".localhost") ||
      names.has(name);
  };
}

/** Whether a bind address is loopback only. */
export function isLoopbackAddress(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127(\.\d{1,3}){3}$/.test(host);
}

/**
 * Why an --allowed-host entry cannot be used, or undefined: names are
 * matched exactly, so "*" (or any pattern) would either match nothing or,
 * read as "any", switch off the DNS-rebinding guard where it is the only
 * protection.
 */
export function allowedHostProblem(name: string): string | undefined {
  if (name.includes("*")) {
    return `--allowed-host ${
      JSON.stringify(name)
    }: names are matched exactly, and "any Host" would switch off the DNS-rebinding guard; ` +
      "name each host clients use (--allowed-host taskwire.example,10.0.0.5), or turn on authentication (--token-file), " +
      "with which a server on a non-loopback address does not check Host";
  }
  if (/[\s/@?#]/.test(name)) return `--allowed-host ${JSON.stringify(name)} is not a host name or address`;
  return undefined;
}
