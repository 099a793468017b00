/** `taskwire cgroup PATH`: a cgroup's tasks by state, like getdelays -C. */
import {
  CgroupStatsMethod,
  type GetCgroupStatsResponse,
  GetCgroupStatsResponseSchema,
  messageToJson,
} from "@taskwire/client";
import { escapeControls } from "../log/logger.ts";
import { clientFor, type Connection } from "./connection.ts";

const METHOD: Record<CgroupStatsMethod, string> = {
  [CgroupStatsMethod.UNSPECIFIED]: "counted by an unknown method",
  [CgroupStatsMethod.KERNEL]: "counted by the kernel (CGROUPSTATS_CMD_GET)",
  [CgroupStatsMethod.PROCFS]:
    "counted from cgroup.threads and /proc (cgroup v2, which the kernel does not count; io_wait unknown)",
};

/** getdelays -C's line, then which cgroup and how it was counted. */
export function formatCgroupStats(r: GetCgroupStatsResponse): string {
  const ioWait = r.nrIoWait === undefined ? "-" : String(r.nrIoWait);
  return [
    `sleeping ${r.nrSleeping}, running ${r.nrRunning}, stopped ${r.nrStopped}, ` +
    `uninterruptible ${r.nrUninterruptible}, io_wait ${ioWait}`,
    `cgroup ${escapeControls(r.path)}: ${METHOD[r.method] ?? METHOD[CgroupStatsMethod.UNSPECIFIED]}`,
  ].join("\n");
}

/** `taskwire cgroup PATH [--json]`. */
export async function cgroupCommand(conn: Connection, path: string, json: boolean): Promise<void> {
  const r = await clientFor(conn).getCgroupStats({ path });
  console.log(json ? JSON.stringify(messageToJson(GetCgroupStatsResponseSchema, r)) : formatCgroupStats(r));
}
