/**
 * Subscriber-side shaping of a stream: which records a listener gets (a
 * filter, applied before a seq is taken, so filtered records are not loss)
 * and which TaskStats fields each event carries (a field mask).
 */
import type { TaskStats } from "../gen/taskwire/kernel/v1/taskstats_pb.ts";
import type { ExitFilter } from "../gen/taskwire/v1/taskstats_pb.ts";
import type { ExitRecord } from "../kernel/exit-record.ts";
import { SLOT } from "../kernel/stats-vector.ts";
import { FIELD_BY_KERNEL_NAME, type TaskStatsField } from "../kernel/taskstats.ts";
import { quote } from "../core/errors.ts";
import { InvalidRequestError } from "./errors.ts";

/** A record predicate; undefined means "everything". */
export type RecordFilter = ((r: ExitRecord) => boolean) | undefined;

// A record's fields as filters read them: from the stats vector where the
// source gave one (reading pidStats would build the whole message).
const UID = SLOT.acUid, EXIT = SLOT.acExitcode;

/** ac_uid of the exiting thread, or undefined where its struct lacks it. */
export function uidOf(r: ExitRecord): number | undefined {
  if (r.pidVector === undefined) return r.pidStats.acUid;
  const v = r.pidVector.values[UID]!;
  return v === v ? v : undefined;
}

function commOf(r: ExitRecord): string {
  return (r.pidVector === undefined ? r.pidStats.acComm : r.pidVector.comm) ?? "";
}

function exitCodeOf(r: ExitRecord): number {
  if (r.pidVector === undefined) return r.pidStats.acExitcode ?? 0;
  const v = r.pidVector.values[EXIT]!;
  return v === v ? v : 0;
}

/** Compiles a request's filter, or undefined when it filters nothing. */
export function compileFilter(f: ExitFilter | undefined): RecordFilter {
  if (f === undefined) return undefined;
  const tests: ((r: ExitRecord) => boolean)[] = [];
  if (f.tgids.length > 0) {
    const tgids = new Set(f.tgids);
    tests.push((r) => tgids.has(r.tgid));
  }
  if (f.uids.length > 0) {
    const uids = new Set(f.uids);
    tests.push((r) => {
      const uid = uidOf(r);
      return uid !== undefined && uids.has(uid);
    });
  }
  if (f.commPrefix !== "") {
    const prefix = f.commPrefix;
    tests.push((r) => commOf(r).startsWith(prefix));
  }
  if (f.nonzeroExit) tests.push((r) => exitCodeOf(r) !== 0);
  if (tests.length === 0) return undefined;
  return (r) => tests.every((t) => t(r));
}

/** A TaskStats projection; undefined means "every field". */
export type Projection = ((s: TaskStats) => TaskStats) | undefined;

/** Compiles a field mask of kernel field names. Unknown names are INVALID_ARGUMENT. */
export function compileFieldMask(fields: readonly string[]): Projection {
  if (fields.length === 0) return undefined;
  const unknown = fields.filter((f) => !FIELD_BY_KERNEL_NAME.has(f));
  if (unknown.length > 0) {
    throw new InvalidRequestError(
      `unknown TaskStats field(s) ${
        unknown.slice(0, 3).map((u) => quote(u)).join(", ") +
        (unknown.length > 3 ? ` and ${unknown.length - 3} more` : "")
      } in fields; use the kernel's names, e.g. "ac_comm", "ac_exitcode", "cpu_delay_total"`,
    );
  }
  const names: TaskStatsField[] = [...new Set(fields)].map((f) => FIELD_BY_KERNEL_NAME.get(f)!.name);
  return (s) => {
    const out: Record<string, unknown> = { $typeName: s.$typeName };
    for (const n of names) if (s[n] !== undefined) out[n] = s[n];
    return out as TaskStats;
  };
}
