/**
 * What every method of the service shares: its dependencies, and the checks
 * that turn request fields into values (InvalidRequestError naming the
 * field otherwise) before anything is done.
 */
import { type Admission, callerBucket } from "../core/admission.ts";
import type { Principal } from "../core/principal.ts";
import { parseCpumask } from "../kernel/cpulist.ts";
import type { ExitRecord } from "../kernel/exit-record.ts";
import type { TaskstatsSource } from "../sources/source.ts";
import type { SharedEncodeGate } from "./encode-gate.ts";
import { InvalidRequestError } from "./errors.ts";
import { uidOf } from "./projection.ts";
import type { HostIdentityInit, ServerRegistry } from "./stream.ts";

/** What the service needs. */
export interface ServiceDeps {
  readonly source: TaskstatsSource;
  readonly registry: ServerRegistry;
  readonly version: string;
  /** How long a stream lingers after a partial batch (the server's load meter); 0 when absent. */
  readonly lingerMs?: () => number;
  /** The events per turn that JSON and field-masked streams share, round-robin between principals (encode-gate.ts); unpaced when absent. */
  readonly encodeGate?: SharedEncodeGate | undefined;
  /** Streams and call rates per principal. */
  readonly admission: Admission;
  /** The Linux capabilities the server process holds now, for GetInfo; none when absent. */
  readonly capabilities?: () => readonly string[];
  /** The host this server reports on (GetInfo and each stream's opening message); unset when absent. */
  readonly host?: HostIdentityInit | undefined;
  /** Told of each stream ended because its client took no batch for a lease (`reset`: its transport dropped it). */
  readonly onStalled?: ((stalled: StalledStream) => void) | undefined;
}

/** A stream ended because its client took no batch for a lease while the memory budget was past its limit. */
export interface StalledStream {
  readonly listenerId: string;
  readonly owner: string;
  readonly why: string;
  /** Whether its transport dropped it (false: no adapter could; it ends if its client reads again). */
  readonly reset: boolean;
}

/** Checks a request field; throws InvalidRequestError naming it. */
export function requireId(value: number, what: "pid" | "tgid"): number {
  if (value === 0) {
    throw new InvalidRequestError(
      `${what} is 0; pass the ${what === "pid" ? "thread id" : "process id"} of a live task (>= 1)`,
    );
  }
  return value;
}

/** A cpumask field parsed against the possible CPUs. */
export function requireMask(text: string, deps: ServiceDeps, field: string): number[] {
  if (text === "") {
    throw new InvalidRequestError(
      `${field} is empty; name CPUs in cpulist syntax, e.g. "0-3,5" (possible CPUs: ${deps.source.possible.list})`,
    );
  }
  return parseCpumask(text, deps.source.possible);
}

/**
 * What a new listener of `who` is: owned by it (an anonymous caller: by its
 * address's bucket, so per-principal limits hold per host), and limited to
 * its uids if it is limited.
 */
export function ownership(who: Principal): { owner: string; scope?: (r: ExitRecord) => boolean } {
  const uids = who.uids;
  const owner = who.via === "none" ? callerBucket(who.id) : who.id;
  if (uids === undefined) return { owner };
  return {
    owner,
    scope: (r) => {
      const uid = uidOf(r);
      return uid !== undefined && uids.has(uid);
    },
  };
}
