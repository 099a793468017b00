/**
 * Whether this process shares the initial network namespace. The kernel
 * unicasts exit records (taskstats_exit -> send_cpu_listeners) to each
 * listener's port id in init_net only, so a server in another network
 * namespace registers fine and then never receives an exit: worth a warning
 * at start, since nothing else would say so.
 */
import { readFileSync, readlinkSync } from "node:fs";

/**
 * "different" when this process is outside init_net; "unknown" when no
 * process known to be in init_net can be read. The reference is kthreadd
 * (pid 2 in the initial pid namespace: kernel threads always use init_net),
 * else pid 1. Reading another process's ns link needs ptrace read access
 * (root, or CAP_SYS_PTRACE), which the hardened unit does not have.
 */
export function networkNamespaceOfInit(): "same" | "different" | "unknown" {
  const own = _netns("self");
  const ref = (_comm(2) === "kthreadd" ? _netns("2") : undefined) ?? _netns("1");
  if (own === undefined || ref === undefined) return "unknown";
  return own === ref ? "same" : "different";
}

function _netns(pid: string): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
}

function _comm(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return undefined;
  }
}
