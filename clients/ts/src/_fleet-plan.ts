/**
 * What one watchFleet reads and keeps: the consumer's filter subject from
 * `subjectPrefix` and `hosts` (a host only when `hosts` is a plain name:
 * NATS wildcards match whole tokens), a host glob checked here by token, and
 * the `cpus` and `filter` checks (loss markers always pass).
 */
import type { ExitEvent } from "./gen/taskwire/v1/taskstats_pb.ts";
import { checkFleetNumbers, type WatchFleetOptions } from "./_fleet-options.ts";

const GLOB = /[*?]/;
const TOKEN = /^[A-Za-z0-9_-]+$/;

/** Where a watch reads from and what it keeps of it. */
export interface Plan {
  readonly subject: string;
  readonly prefixTokens: number;
  readonly host: ((token: string) => boolean) | undefined;
  readonly keep: ((ev: ExitEvent) => boolean) | undefined;
}

/** The filter subject and the checks made here; TypeError/RangeError for bad options. */
export function _plan(o: WatchFleetOptions): Plan {
  checkFleetNumbers(o);
  const prefix = o.subjectPrefix ?? "taskwire";
  if (prefix.split(".").some((t) => !TOKEN.test(t))) {
    throw new RangeError(`watchFleet: subjectPrefix "${prefix}" must be dot-separated tokens of A-Z a-z 0-9 _ -`);
  }
  const hosts = o.hosts ?? "*";
  if (!/^[A-Za-z0-9_*?-]+$/.test(hosts)) {
    throw new RangeError(
      `watchFleet: hosts "${hosts}" must be a host's subject token or a glob of A-Z a-z 0-9 _ - * ? (a host name's dots and other characters become "_": "${
        hosts.replace(/[^A-Za-z0-9_*?-]/g, "_")
      }")`,
    );
  }
  const literal = !GLOB.test(hosts);
  return {
    subject: `${prefix}.${literal ? hosts : "*"}.exits.*`,
    prefixTokens: prefix.split(".").length,
    host: literal || hosts === "*" ? undefined : _glob(hosts),
    keep: _keep(o),
  };
}

function _glob(glob: string): (token: string) => boolean {
  const re = new RegExp(`^${glob.replace(/[*?]/g, (c) => (c === "*" ? "[^.]*" : "[^.]"))}$`);
  return (token) => re.test(token);
}

// Exit events matching cpus and filter; loss markers always.
function _keep(o: WatchFleetOptions): ((ev: ExitEvent) => boolean) | undefined {
  const cpus = o.cpus === undefined ? undefined : new Set(o.cpus);
  const f = o.filter;
  if (cpus === undefined && f === undefined) return undefined;
  const tgids = f?.tgids?.length ? new Set(f.tgids) : undefined;
  const uids = f?.uids?.length ? new Set(f.uids) : undefined;
  return (ev) => {
    if (ev.event.case !== "exit") return true;
    const s = ev.event.value.pidStats;
    if (cpus !== undefined && !cpus.has(ev.cpu)) return false;
    if (tgids !== undefined && !tgids.has(ev.event.value.tgid)) return false;
    if (uids !== undefined && !uids.has(s?.acUid ?? -1)) return false;
    if (f?.commPrefix && !(s?.acComm ?? "").startsWith(f.commPrefix)) return false;
    return !(f?.nonzeroExit && (s?.acExitcode ?? 0) === 0);
  };
}
