/**
 * DNS rebinding: a web page on evil.example can make a browser resolve its
 * own name to 127.0.0.1 and then reach a server on loopback as a "same
 * origin". Such requests still carry the attacker's name in Host, so a server
 * meant for loopback answers only to loopback names and the names it was
 * given.
 */

const LOOPBACK_NAMES = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

/** The host part of a Host header or :authority ("name:port", "[v6]:port"), lowercased. */
export function hostName(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(0, h.indexOf("]") + 1);
  const colon = h.lastIndexOf(":");
  return colon === -1 ? h : h.slice(0, colon);
}

/** A check of Host headers: loopback names (127.0.0.0/8, localhost, ::1) and `extra` names. */
export function createHostCheck(extra: readonly string[] = []): (header: string | null | undefined) => boolean {
  const names = new Set(extra.map((n) => hostName(n)));
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
