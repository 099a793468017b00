/**
 * The host a server reports on, read once at start: records of one host are
 * comparable only within one boot (pids and ac_btime start again), and a
 * fleet needs to tell hosts apart.
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";

/** Which machine and boot (the proto's HostIdentity). */
export interface HostIdentity {
  /** uname -n, or the name given (--host-name). */
  readonly hostname: string;
  /** /proc/sys/kernel/random/boot_id: the kernel makes a new one at every boot. */
  readonly bootId: string;
  /** /etc/machine-id where present (systemd hosts), else "". */
  readonly machineId: string;
  readonly source: "netlink" | "sim";
}

/** Reads this host's identity; `name` overrides the hostname (several simulated hosts on one machine). */
export function readHostIdentity(source: "netlink" | "sim", name?: string): HostIdentity {
  return {
    hostname: name ?? hostname(),
    bootId: firstLine("/proc/sys/kernel/random/boot_id"),
    machineId: firstLine("/etc/machine-id"),
    source,
  };
}

// A missing file (not Linux, a container without /etc/machine-id) leaves the field empty: the proto says so.
function firstLine(path: string): string {
  try {
    return readFileSync(path, "utf8").split("\n", 1)[0]!.trim();
  } catch {
    return "";
  }
}
