/**
 * The Linux capabilities this process holds: the effective set (CapEff in
 * /proc/self/status, a hex mask), with each bit named. taskwire needs only
 * CAP_NET_ADMIN (TASKSTATS_CMD_GET, listener registration and
 * SO_RCVBUFFORCE all check it), so GetInfo and `taskwire serve` say what the
 * server holds and the CLI warns when it holds more.
 */
import { readFileSync } from "node:fs";

/** The one capability the netlink source needs. */
export const CAP_NET_ADMIN = "CAP_NET_ADMIN";

/**
 * Capability names by bit number, from include/uapi/linux/capability.h:
 * CAP_CHOWN (0) through CAP_CHECKPOINT_RESTORE (40), which is CAP_LAST_CAP
 * since Linux 5.9 and still is in 6.x (/proc/sys/kernel/cap_last_cap).
 */
export const CAPABILITY_NAMES: readonly string[] = Object.freeze([
  "CAP_CHOWN", // 0
  "CAP_DAC_OVERRIDE",
  "CAP_DAC_READ_SEARCH",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL", // 5
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETPCAP",
  "CAP_LINUX_IMMUTABLE",
  "CAP_NET_BIND_SERVICE", // 10
  "CAP_NET_BROADCAST",
  "CAP_NET_ADMIN",
  "CAP_NET_RAW",
  "CAP_IPC_LOCK",
  "CAP_IPC_OWNER", // 15
  "CAP_SYS_MODULE",
  "CAP_SYS_RAWIO",
  "CAP_SYS_CHROOT",
  "CAP_SYS_PTRACE",
  "CAP_SYS_PACCT", // 20
  "CAP_SYS_ADMIN",
  "CAP_SYS_BOOT",
  "CAP_SYS_NICE",
  "CAP_SYS_RESOURCE",
  "CAP_SYS_TIME", // 25
  "CAP_SYS_TTY_CONFIG",
  "CAP_MKNOD",
  "CAP_LEASE",
  "CAP_AUDIT_WRITE",
  "CAP_AUDIT_CONTROL", // 30
  "CAP_SETFCAP",
  "CAP_MAC_OVERRIDE",
  "CAP_MAC_ADMIN",
  "CAP_SYSLOG",
  "CAP_WAKE_ALARM", // 35
  "CAP_BLOCK_SUSPEND",
  "CAP_AUDIT_READ",
  "CAP_PERFMON",
  "CAP_BPF",
  "CAP_CHECKPOINT_RESTORE", // 40
]);

/**
 * The names of the bits set in a capability mask, lowest bit first. A bit
 * past the table (a kernel newer than it) is named by its number, as
 * libcap's cap_to_name() does ("41").
 */
export function capabilityNames(mask: bigint): string[] {
  if (mask < 0n) throw new RangeError(`a capability mask is not negative, got ${mask}`);
  const names: string[] = [];
  for (let bit = 0; mask >> BigInt(bit) !== 0n; bit++) {
    if ((mask >> BigInt(bit)) & 1n) names.push(CAPABILITY_NAMES[bit] ?? String(bit));
  }
  return names;
}

/**
 * The effective capabilities named in the text of /proc/<pid>/status (its
 * `CapEff:` line, 16 hex digits since Linux 2.6.25). Throws RangeError when
 * the text has no well-formed CapEff line.
 */
export function parseEffectiveCapabilities(status: string): string[] {
  const m = /^CapEff:\s*([0-9a-fA-F]{1,16})\s*$/m.exec(status);
  if (m === null) throw new RangeError("no CapEff line with a hex mask in this /proc/<pid>/status text");
  return capabilityNames(BigInt(`0x${m[1]}`));
}

/**
 * This process's effective capabilities, read now (they can be dropped at
 * run time). Empty off Linux, or when /proc/self/status cannot be read or parsed.
 */
export function readCapabilities(): string[] {
  if (process.platform !== "linux") return [];
  try {
    return parseEffectiveCapabilities(readFileSync("/proc/self/status", "utf8"));
  } catch {
    return [];
  }
}

/**
 * A short description of a set of names: "CAP_NET_ADMIN", "no capabilities",
 * "every capability", or "40 capabilities (all but CAP_SYS_RESOURCE)".
 */
export function describeCapabilities(names: readonly string[]): string {
  if (names.length === 0) return "no capabilities";
  const missing = CAPABILITY_NAMES.filter((n) => !names.includes(n));
  if (missing.length === 0) return "every capability";
  if (names.length <= 4) return names.join(", ");
  if (missing.length <= 4) return `${names.length} capabilities (all but ${missing.join(", ")})`;
  return `${names.length} capabilities (${names.join(", ")})`;
}

/** The README section that says how to run taskwire with only the capability it needs. */
export const PRIVILEGES_SECTION = "Privileges: only CAP_NET_ADMIN";

/** What `excessCapabilities` is told. */
export interface PrivilegeFacts {
  /** The capabilities held (readCapabilities()). */
  readonly held: readonly string[];
  /** The capabilities the chosen source needs: [CAP_NET_ADMIN] for netlink, none for sim. */
  readonly needed: readonly string[];
  /** The effective uid, when the runtime tells it. */
  readonly euid: number | undefined;
}

/**
 * A warning when the process holds capabilities it does not need (running
 * as root, typically), naming what it needs instead; undefined otherwise.
 */
export function excessCapabilities(facts: PrivilegeFacts): string | undefined {
  const extra = facts.held.filter((n) => !facts.needed.includes(n));
  if (extra.length === 0) return undefined;
  const who = facts.euid === 0 ? "as root " : facts.euid === undefined ? "" : `as uid ${facts.euid} `;
  // Name the section and the two ways it gives, not just "the README": the reader is an operator at a log.
  const needs = facts.needed.length === 0
    ? "no capabilities with this source: run it as an unprivileged user"
    : `only ${facts.needed.join(", ")}: run it as a user holding just that (setpriv or deploy/taskwire.service` +
      `; README, "${PRIVILEGES_SECTION}")`;
  return `running ${who}with ${describeCapabilities(facts.held)}; taskwire needs ${needs}`;
}
