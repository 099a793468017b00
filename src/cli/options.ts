/** Option parsers and the filter flags shared by `watch` and `top`. */
import { type Command, InvalidArgumentError } from "commander";
import { parseBytes } from "../core/byte-counts.ts";
import { FLEET_DEFAULTS } from "../fleet/publisher.ts";
import { UsageError } from "./errors.ts";
import { addNatsConnectionOptions, checkNatsPems, NATS_CONNECTION_KEYS, natsConnectionFrom } from "./nats-options.ts";
import type { EventInputOptions } from "./event-input.ts";
import type { FleetFlags } from "./fleet-input.ts";

/** A commander parser for a whole number in [min, max]; a bad value is a usage error (status 2). */
export function intArg(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || n < min || n > max) {
      // No bound worth reading: "from 1 to 2^53-1", not "from 1 to 9007199254740991".
      throw new InvalidArgumentError(
        max === Number.MAX_SAFE_INTEGER
          ? `expected a whole number from ${min} to 2^53-1`
          : `expected a whole number from ${min} to ${max}`,
      );
    }
    return n;
  };
}

/**
 * A commander parser for a byte count in [min, max]: a whole number, or with a unit as --memory-budget takes one
 * (64KiB, 8MiB); a bad value is a usage error (status 2).
 */
export function bytesArg(min: number, max: number) {
  return (value: string): number => {
    let n = NaN, why = "";
    try {
      n = parseBytes(value, 0);
    } catch (err) {
      why = ` (${(err as Error).message})`; // what is wrong with it, a fraction of a byte say
    }
    if (!(n >= min && n <= max)) {
      throw new InvalidArgumentError(
        `expected a byte count from ${min} to ${max}, as a number or with a unit (8MiB)${why}`,
      );
    }
    return n;
  };
}

/** A commander parser for a comma-separated list of uint32 ids ("0,1000"). */
function idList(value: string): number[] {
  const ids = value.split(",").map((x) => x.trim());
  if (ids.length > 1024 || ids.some((x) => !/^\d{1,10}$/.test(x) || Number(x) > 0xffffffff)) {
    throw new InvalidArgumentError("expected up to 1024 comma-separated whole numbers from 0 to 4294967295");
  }
  return ids.map(Number);
}

// The kernel's comm is at most TASK_COMM_LEN - 1 = 15 bytes: a longer prefix could never match.
function commPrefix(value: string): string {
  if (new TextEncoder().encode(value).length > 15) {
    throw new InvalidArgumentError(
      "a comm is at most 15 bytes (the kernel's TASK_COMM_LEN); a longer prefix never matches",
    );
  }
  return value;
}

// No task has tgid 0 (the idle tasks never exit).
function tgidList(value: string): number[] {
  const ids = idList(value);
  if (ids.includes(0)) throw new InvalidArgumentError("tgid 0 is no process; give the tgids of processes (ps -o tgid)");
  return ids;
}

/** Adds --comm, --uid, --tgid, --nonzero-exit (the server-side ExitFilter). */
export function filterOptions(cmd: Command): Command {
  return cmd
    .option("--comm <prefix>", "only tasks whose comm starts with this (server-side; at most 15 bytes)", commPrefix)
    .option("--uid <uids>", "only tasks of these uids, comma-separated (server-side)", idList)
    .option("--tgid <tgids>", "only threads of these processes, comma-separated (server-side)", tgidList)
    .option("--nonzero-exit", "only tasks that exited nonzero or were killed (server-side)");
}

/** The ExitFilter the filter flags ask for, or undefined when none is set. */
export function filterFrom(o: Record<string, unknown>): EventInputOptions["filter"] {
  const f = {
    ...(typeof o["comm"] === "string" && { commPrefix: o["comm"] as string }),
    ...(Array.isArray(o["uid"]) && { uids: o["uid"] as number[] }),
    ...(Array.isArray(o["tgid"]) && { tgids: o["tgid"] as number[] }),
    ...(o["nonzeroExit"] === true && { nonzeroExit: true }),
  };
  return Object.keys(f).length === 0 ? undefined : f;
}

/** Adds --nats, --hosts and the NATS connection flags (credentials from files only, as `serve --nats-*`). */
export function fleetOptions(cmd: Command): Command {
  cmd
    .option(
      "--nats <urls>",
      "read the fleet's exits from NATS JetStream (servers published with serve --nats), comma-separated URLs",
    )
    .option("--hosts <glob>", "with --nats: hosts to show, a name or a glob with * and ? (default: every host)")
    .option(
      "--durable <name>",
      "with --nats: a durable consumer's name, to resume where it left off (Ctrl-C first prints the rest of the messages it is in the middle of, about 3 s at most, so the next run repeats nothing)",
    )
    .option("--from-start", "with --nats: start with every stored exit, not new ones")
    .option("--nats-stream <name>", "with --nats: the JetStream stream (serve's --nats-stream)", FLEET_DEFAULTS.stream)
    .option(
      "--nats-subject-prefix <p>",
      "with --nats: the subject prefix (serve's --nats-subject-prefix)",
      FLEET_DEFAULTS.prefix,
    );
  return addNatsConnectionOptions(cmd);
}

/** The fleet flags given, or undefined without --nats; the fleet-only flags without --nats are a usage error. */
export function fleetFrom(o: Record<string, unknown>): FleetFlags | undefined {
  const str = (k: string) => (typeof o[k] === "string" ? (o[k] as string) : undefined);
  if (str("nats") === undefined) {
    // The stream and prefix have defaults: only another value is a stray setting.
    const defaults: Record<string, unknown> = {
      natsStream: FLEET_DEFAULTS.stream,
      natsSubjectPrefix: FLEET_DEFAULTS.prefix,
    };
    const given = (k: string) => o[k] !== undefined && o[k] !== defaults[k];
    const stray = ["hosts", "durable", "fromStart", "natsStream", "natsSubjectPrefix", ...NATS_CONNECTION_KEYS]
      .find(given);
    if (stray !== undefined) throw new UsageError(`--${_kebab(stray)} needs --nats <urls>`);
    return undefined;
  }
  const connection = natsConnectionFrom(o);
  checkNatsPems(connection);
  return {
    nats: str("nats")!,
    hosts: str("hosts"),
    durable: str("durable"),
    all: o["fromStart"] === true,
    stream: str("natsStream"),
    subjectPrefix: str("natsSubjectPrefix"),
    ...connection,
  };
}

function _kebab(camel: string): string {
  return camel.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
