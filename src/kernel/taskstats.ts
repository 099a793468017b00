/**
 * struct taskstats (linux/taskstats.h), version 16: field names, C types and
 * byte offsets on x86_64. The struct is append-only except version 15 (see
 * the netlink decoder); a field exists in a record when the struct is long
 * enough to hold it. Pure: no I/O.
 */
import type { TaskStats } from "../gen/taskwire/kernel/v1/taskstats_pb.ts";

/** The struct version whose layout this table describes. */
export const TASKSTATS_VERSION = 16;
/** sizeof(struct taskstats) at version 16. */
export const TASKSTATS_SIZE = 560;
/** TASKSTATS_COMM_LEN */
export const TS_COMM_LEN = 32;

/** C type of a struct taskstats field. */
export type FieldType = "u8" | "u16" | "u32" | "u64" | "comm";

/** One field: its kernel name, C type and offset in bytes. */
export interface FieldSpec {
  readonly name: TaskStatsField;
  readonly type: FieldType;
  readonly offset: number;
}

/** A TaskStats field name (the kernel's own). */
export type TaskStatsField = Exclude<keyof TaskStats, "$typeName" | "$unknown">;

const U64_FIELDS_1 = [
  "cpu_count",
  "cpu_delay_total",
  "blkio_count",
  "blkio_delay_total",
  "swapin_count",
  "swapin_delay_total",
  "cpu_run_real_total",
  "cpu_run_virtual_total",
] as const;
const U64_FIELDS_2 = [
  "ac_etime",
  "ac_utime",
  "ac_stime",
  "ac_minflt",
  "ac_majflt",
  "coremem",
  "virtmem",
  "hiwater_rss",
  "hiwater_vm",
  "read_char",
  "write_char",
  "read_syscalls",
  "write_syscalls",
  "read_bytes",
  "write_bytes",
  "cancelled_write_bytes",
  "nvcsw",
  "nivcsw",
  "ac_utimescaled",
  "ac_stimescaled",
  "cpu_scaled_run_real_total",
  "freepages_count",
  "freepages_delay_total",
  "thrashing_count",
  "thrashing_delay_total",
  "ac_btime64",
  "compact_count",
  "compact_delay_total",
] as const;
const U64_FIELDS_3 = [
  "ac_tgetime",
  "ac_exe_dev",
  "ac_exe_inode",
  "wpcopy_count",
  "wpcopy_delay_total",
  "irq_count",
  "irq_delay_total",
] as const;
/** The delay classes that have *_delay_max and *_delay_min (v15+), in v16 order. */
export const DELAY_CLASSES = ["cpu", "blkio", "swapin", "freepages", "thrashing", "compact", "wpcopy", "irq"] as const;

function camel(snake: string): TaskStatsField {
  return snake.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()) as TaskStatsField;
}

function u64s(names: readonly string[], from: number): FieldSpec[] {
  return names.map((n, i) => ({ name: camel(n), type: "u64" as const, offset: from + 8 * i }));
}

/** Every field of struct taskstats v16, in struct order. */
export const TASKSTATS_FIELDS: readonly FieldSpec[] = Object.freeze(
  [
    { name: "version", type: "u16", offset: 0 },
    { name: "acExitcode", type: "u32", offset: 4 },
    { name: "acFlag", type: "u8", offset: 8 },
    { name: "acNice", type: "u8", offset: 9 },
    ...u64s(U64_FIELDS_1, 16),
    { name: "acComm", type: "comm", offset: 80 },
    { name: "acSched", type: "u8", offset: 112 },
    { name: "acUid", type: "u32", offset: 120 },
    { name: "acGid", type: "u32", offset: 124 },
    { name: "acPid", type: "u32", offset: 128 },
    { name: "acPpid", type: "u32", offset: 132 },
    { name: "acBtime", type: "u32", offset: 136 },
    ...u64s(U64_FIELDS_2, 144),
    { name: "acTgid", type: "u32", offset: 368 },
    ...u64s(U64_FIELDS_3, 376),
    ...u64s(DELAY_CLASSES.flatMap((c) => [`${c}_delay_max`, `${c}_delay_min`]), 432),
  ] satisfies FieldSpec[],
);

/** Field names by their proto (snake_case) spelling, for field masks and docs. */
export const FIELD_BY_KERNEL_NAME: ReadonlyMap<string, FieldSpec> = new Map(
  TASKSTATS_FIELDS.map((f) => [f.name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), f]),
);

/** The kernel's ac_flag bits (linux/acct.h). */
export const AcFlag = Object.freeze({ AFORK: 0x01, ASU: 0x02, ACORE: 0x08, AXSIG: 0x10, AGROUP: 0x20 });
