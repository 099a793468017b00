/**
 * The host a server reports on, read once at start: records of one host are
 * comparable only within one boot (pids and ac_btime start again), and a
 * fleet needs to tell hosts apart.
 *
 * The machine id itself is never sent. machine-id(5) asks that it be kept
 * confidential: it is a stable secret other programs derive identifiers and
 * keys from. Callers get taskwire's app-specific id instead, made as
 * systemd's sd_id128_get_machine_app_specific() makes one (the same value
 * `systemd-id128 machine-id --app-specific=TASKWIRE_APP_ID` prints): stable
 * across restarts and reboots, distinct per machine, and useless for finding
 * the machine id or another application's id of the same machine.
 */
import { Buffer } from "node:buffer";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { SourceInfo } from "../sources/source.ts";

/** taskwire's application id (a random v4 UUID, fixed forever: changing it changes every host's machine_id). */
export const TASKWIRE_APP_ID = "e3d01be029c04611a926e0e4f6d7e289";

/** Which machine and boot (the proto's HostIdentity). */
export interface HostIdentity {
  /** uname -n, or the name given (--host-name). */
  readonly hostname: string;
  /** /proc/sys/kernel/random/boot_id: the kernel makes a new one at every boot (a sim, at each start). */
  readonly bootId: string;
  /** taskwire's app-specific id of /etc/machine-id where present (systemd hosts), else "". */
  readonly machineId: string;
  readonly source: "netlink" | "sim";
}

/**
 * Reads this host's identity for a source (its name, and its own boot id if it is not this machine's kernel);
 * `name` overrides the hostname (several simulated hosts on one machine).
 */
export function readHostIdentity(source: Pick<SourceInfo, "source" | "bootId">, name?: string): HostIdentity {
  return {
    hostname: name ?? hostname(),
    bootId: source.bootId ?? readBootId(),
    machineId: appSpecificId(firstLine("/etc/machine-id"), TASKWIRE_APP_ID),
    source: source.source,
  };
}

/** This machine's boot id (/proc/sys/kernel/random/boot_id); "" where it cannot be read. */
export function readBootId(): string {
  return firstLine("/proc/sys/kernel/random/boot_id");
}

const ID128 = /^[0-9a-f]{32}$/;

/**
 * sd_id128_get_machine_app_specific(): HMAC-SHA256 of the app id keyed by
 * the machine id (both as 16 raw bytes), its first 16 bytes made a v4 UUID
 * (version nibble 4, RFC 4122 variant), in machine-id(5)'s form: 32 lowercase
 * hex digits. "" for a machine id that is missing or malformed.
 */
export function appSpecificId(machineId: string, appId: string): string {
  const id = machineId.toLowerCase();
  if (!ID128.test(id)) return "";
  if (!ID128.test(appId)) throw new RangeError(`an app id is 32 lowercase hex digits, got ${JSON.stringify(appId)}`);
  const mac = createHmac("sha256", Buffer.from(id, "hex")).update(Buffer.from(appId, "hex")).digest();
  mac[6] = (mac[6]! & 0x0f) | 0x40;
  mac[8] = (mac[8]! & 0x3f) | 0x80;
  return mac.subarray(0, 16).toString("hex");
}

// A missing file (not Linux, a container without /etc/machine-id) leaves the field empty: the proto says so.
function firstLine(path: string): string {
  try {
    return readFileSync(path, "utf8").split("\n", 1)[0]!.trim();
  } catch {
    return "";
  }
}
