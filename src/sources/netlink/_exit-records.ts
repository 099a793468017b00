/**
 * One TASKSTATS_NEW message, as the reader found it in a batch (codec.ts's
 * TaskstatsNewAt), made into an ExitRecord: as stats vectors in the usual
 * case, as TaskStats messages for a value no double holds exactly. Pure:
 * the main thread's reader (reader.ts) calls it per record.
 */
import type { ExitRecord } from "../../kernel/exit-record.ts";
import { decodeStatsVectorAt, decodeTaskStats } from "../../kernel/taskstats-decode.ts";
import { SLOT } from "../../kernel/stats-vector.ts";
import { vectorRecord } from "../../kernel/vector-record.ts";
import type { TaskstatsNewAt } from "./codec.ts";

/** Where and when a record was read: its CPU, the kernel's per-CPU seq, the receive time. */
export interface Where {
  cpu: number;
  cpuSeq: number;
  at: number;
}

/**
 * The usual case: the structs as number vectors (no BigInt per field; the
 * TaskStats messages are built only if something reads them); undefined
 * when a value needs messages (see `messages`).
 */
export function vectors(dv: DataView, bytes: Uint8Array, w: TaskstatsNewAt, r: Where): ExitRecord | undefined {
  const pidVector = decodeStatsVectorAt(dv, bytes, w.pidStats, w.pidStatsLength);
  const tgidVector = w.tgidStats < 0 ? undefined : decodeStatsVectorAt(dv, bytes, w.tgidStats, w.tgidStatsLength);
  if (pidVector === undefined || (w.tgidStats >= 0 && tgidVector === undefined)) return undefined;
  const acTgid = pidVector.values[SLOT.acTgid]!;
  return vectorRecord({
    cpu: r.cpu,
    cpuSeq: r.cpuSeq,
    receivedAtMs: r.at,
    pid: w.pid,
    tgid: w.tgidStats >= 0 ? w.tgid : acTgid === acTgid ? acTgid : 0,
    pidVector,
    tgidVector,
  });
}

/** A 64-bit value of 2^53 or more has no exact double: that record is decoded as TaskStats messages. */
export function messages(bytes: Uint8Array, w: TaskstatsNewAt, r: Where): ExitRecord {
  const pidStats = decodeTaskStats(bytes.subarray(w.pidStats, w.pidStats + w.pidStatsLength));
  return {
    cpu: r.cpu,
    cpuSeq: r.cpuSeq,
    receivedAtMs: r.at,
    pid: w.pid,
    tgid: w.tgidStats >= 0 ? w.tgid : pidStats.acTgid ?? 0,
    pidStats,
    tgidStats: w.tgidStats < 0
      ? undefined
      : decodeTaskStats(bytes.subarray(w.tgidStats, w.tgidStats + w.tgidStatsLength)),
  };
}
