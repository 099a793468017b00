/** Exit records whose stats are vectors: what the sim and the netlink reader produce. */
import type { TaskStats } from "../gen/taskwire/kernel/v1/taskstats_pb.ts";
import { ENCODED_BODY, ENCODED_BODY_BUFFER, type ExitRecord, UNSHARED_COPY } from "./exit-record.ts";
import { type StatsVector, toTaskStats } from "./stats-vector.ts";

/**
 * A record carrying its stats as vectors; the TaskStats messages are built on
 * first access (JSON streams, masks, filters), once. A class: an object
 * literal with getters is built by a slow runtime path, on every exit.
 */
class VectorRecord implements ExitRecord {
  #pidStats: TaskStats | undefined;
  #tgidStats: TaskStats | undefined;
  [ENCODED_BODY]: Uint8Array | undefined = undefined;
  declare [UNSHARED_COPY]: ExitRecord | undefined;
  // Slabs are kept in private fields behind accessors: as own properties, every deep comparison of two records
  // (tests' toEqual) would walk their 581 KB and 64 KiB slabs.
  readonly #slab: object | undefined;
  readonly #slabVectors: number;
  #bodyBuffer: ArrayBufferLike | undefined = undefined;
  constructor(
    readonly cpu: number,
    readonly cpuSeq: number,
    readonly receivedAtMs: number,
    readonly pid: number,
    readonly tgid: number,
    readonly pidVector: StatsVector,
    readonly tgidVector: StatsVector | undefined,
  ) {
    this.#slab = pidVector.slab;
    this.#slabVectors = tgidVector !== undefined && tgidVector.slab === pidVector.slab ? 2 : 1;
  }

  get slab(): object | undefined {
    return this.#slab;
  }

  get slabVectors(): number {
    return this.#slabVectors;
  }

  get [ENCODED_BODY_BUFFER](): ArrayBufferLike | undefined {
    return this.#bodyBuffer;
  }

  set [ENCODED_BODY_BUFFER](buffer: ArrayBufferLike | undefined) {
    this.#bodyBuffer = buffer;
  }

  get pidStats(): TaskStats {
    return (this.#pidStats ??= toTaskStats(this.pidVector));
  }

  get tgidStats(): TaskStats | undefined {
    return this.tgidVector === undefined ? undefined : (this.#tgidStats ??= toTaskStats(this.tgidVector));
  }
}

// Read of every record each listener retains, written only for the few that
// are copied: on the prototype, reads find it without a missing-property
// lookup and records keep their one shape.
VectorRecord.prototype[UNSHARED_COPY] = undefined;

/** An exit record whose stats are vectors (what the sim and the netlink reader produce). */
export function vectorRecord(
  r: {
    cpu: number;
    cpuSeq: number;
    receivedAtMs: number;
    pid: number;
    tgid: number;
    pidVector: StatsVector;
    tgidVector: StatsVector | undefined;
  },
): ExitRecord {
  return new VectorRecord(r.cpu, r.cpuSeq, r.receivedAtMs, r.pid, r.tgid, r.pidVector, r.tgidVector);
}
