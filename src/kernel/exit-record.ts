/**
 * What a source hands the listener table for each task exit: the kernel's
 * TASKSTATS_CMD_NEW message, already decoded. Pure types.
 */
import type { TaskStats } from "../gen/taskwire/kernel/v1/taskstats_pb.ts";
import type { StatsVector } from "./stats-vector.ts";

/**
 * Where an encoder may keep what it encoded of a record once (the binary
 * stream's Exit body, rpc/fast-binary/batch.ts). VectorRecord declares it, so
 * that storing it does not change the record's shape on every exit.
 */
export const ENCODED_BODY: unique symbol = Symbol("taskwire.encoded-body");

/**
 * Where the server keeps a record's copy that shares no storage with other
 * records (server/memory.ts unshareRecord; on the copy: the copy itself).
 * VectorRecord's prototype holds it: every listener reads it of every record
 * it retains, and a missing symbol property is a slow lookup each time.
 */
export const UNSHARED_COPY: unique symbol = Symbol("taskwire.unshared");
/** The buffer of a record's ENCODED_BODY (read once per count: TypedArray#buffer costs ~65 ns). */
export const ENCODED_BODY_BUFFER: unique symbol = Symbol("taskwire.encoded-body-buffer");

/** One exit as the kernel reports it to the listeners of `cpu`. */
export interface ExitRecord {
  /** CPU the task exited on (the kernel builds the record there). */
  readonly cpu: number;
  /** The kernel's per-CPU message number (nlmsg_seq from taskstats_seqnum). */
  readonly cpuSeq: number;
  /**
   * When the server received the record, wall-clock milliseconds since the
   * epoch (fractional: microseconds). The netlink reader stamps each batch as
   * its poll returns; the sim stamps the virtual time of the exit.
   */
  readonly receivedAtMs: number;
  /** The exiting thread. */
  readonly pid: number;
  /** Its thread group. */
  readonly tgid: number;
  /** TASKSTATS_TYPE_AGGR_PID's stats. */
  readonly pidStats: TaskStats;
  /** TASKSTATS_TYPE_AGGR_TGID's stats: the last thread of a group that was ever multithreaded. */
  readonly tgidStats?: TaskStats | undefined;
  /**
   * The same stats as number vectors, when the source computes them that way
   * (the sim). Encoders write from these directly; pidStats and tgidStats are
   * then built only when something reads them.
   */
  readonly pidVector?: StatsVector | undefined;
  readonly tgidVector?: StatsVector | undefined;
  /**
   * The shared slab pidVector lives in (undefined: none, as for a copy with
   * vectors of its own), and how many of the record's vectors are in it:
   * what holding the record keeps alive (server/memory.ts). Read per listener
   * of every record it holds, so worked out once, as the record is made.
   */
  readonly slab?: object | undefined;
  readonly slabVectors?: number | undefined;
}

/**
 * A wall-clock time in ms (fractional) as google.protobuf.Timestamp's parts,
 * to the microsecond: whole seconds, and nanoseconds 0-999,999,999 (times
 * before the epoch are clamped to it). Computed from whole microseconds so
 * that float error never rounds nanos up to a full second.
 */
export function timestampParts(ms: number): { seconds: number; nanos: number } {
  const us = timestampMicros(ms);
  return { seconds: secondsOfMicros(us), nanos: nanosOfMicros(us) };
}

/** A wall-clock time in ms as whole microseconds, clamped at the epoch: what timestampParts splits. */
export function timestampMicros(ms: number): number {
  return Math.max(0, Math.round(ms * 1000));
}

/** Timestamp.seconds of timestampMicros' `us`, without timestampParts' object (the stream encoder's per-record path). */
export function secondsOfMicros(us: number): number {
  return Math.floor(us / 1e6);
}

/** Timestamp.nanos of timestampMicros' `us`, without timestampParts' object. */
export function nanosOfMicros(us: number): number {
  return (us - secondsOfMicros(us) * 1e6) * 1000;
}
