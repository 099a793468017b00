/**
 * `taskwire serve`'s fleet flags (--nats and --nats-*): publish every exit
 * record to a NATS JetStream stream (src/fleet). Like every serve flag, each
 * is also a config key and a TASKWIRE_* variable. Credentials come from
 * files only (--nats-creds, --nats-nkey, --nats-token-file): a secret on the
 * command line is visible to every user through ps.
 */
import { type Command, InvalidArgumentError, Option } from "commander";
import { parseBytes } from "../core/byte-counts.ts";
import {
  checkFleetOptions,
  FLEET_DEFAULTS,
  type FleetOptions,
  type FleetPublisher,
  NatsConnectError,
  redactUrl,
  type Retention,
  serverList,
  startFleetPublisher,
  StreamConfigError,
} from "../fleet/publisher.ts";
import { UsageError } from "./errors.ts";
import { addNatsConnectionOptions, checkNatsPems, natsConnectionFrom } from "./nats-options.ts";

type IntParser = (min: number, max?: number) => (value: string) => number;

function bytesOrZero(value: string): number {
  try {
    return parseBytes(value, 0);
  } catch (err) {
    throw new InvalidArgumentError(`${(err as Error).message} (0: no limit)`);
  }
}

/** Adds the flags to `serve`. */
export function addNatsOptions(cmd: Command, int: IntParser): Command {
  const d = FLEET_DEFAULTS;
  const withoutConnection = cmd
    .option(
      "--nats <urls>",
      "publish every exit record to NATS JetStream at these servers (comma-separated nats:// or tls:// URLs; off when unset)",
    )
    .option("--nats-stream <name>", "the JetStream stream (made if missing)", d.stream)
    .option("--nats-subject-prefix <prefix>", "subjects are <prefix>.<host>.exits.<cpu>", d.prefix)
    .addOption(
      new Option(
        "--nats-retention <policy>",
        "a new stream's retention: limits (age and bytes), interest (until every consumer acked), workqueue (until one consumer acked)",
      ).choices(["limits", "interest", "workqueue"]).default(d.retention),
    )
    .option("--nats-max-age-ms <ms>", "a new stream keeps messages this long (0: no limit)", int(0), d.maxAgeMs)
    .addOption(
      new Option("--nats-max-bytes <bytes>", "a new stream keeps at most this much, oldest dropped first (0: no limit)")
        .argParser(bytesOrZero).default(d.maxBytes, "1GiB"),
    )
    .option(
      "--nats-window <n>",
      "a batch (up to 1024 events) is taken only while fewer messages await JetStream's ack; a batch cut small for NATS's size limits may put more in flight; past it exits wait in the publisher's queue",
      int(1, 65536),
      d.window,
    )
    .option(
      "--nats-buffer <n>",
      "the publisher's queue (events); full (NATS slow or down), it drops exits and publishes an exact loss marker later",
      int(1),
      d.buffer,
    )
    .option(
      "--nats-linger-ms <ms>",
      "under load (a partial batch taken while messages are in flight), wait this long before the next batch: fewer, fuller messages (0: never)",
      int(0, 1000),
      d.lingerMs,
    )
    .option(
      "--nats-ack-timeout-ms <ms>",
      "a publish not acked within this is retried (same message id)",
      int(1, 2 ** 31 - 1), // a timer's longest wait: past it Node fires at once
      d.ackTimeoutMs,
    )
    .option(
      "--nats-host-name <token>",
      "this host's subject token (default: the hostname, with each . and other characters outside A-Z a-z 0-9 _ - made _)",
    );
  return addNatsConnectionOptions(withoutConnection);
}

/** The publisher's options from the parsed flags; undefined without --nats. */
export function natsFlagsFrom(o: Record<string, unknown>): FleetOptions | undefined {
  const servers = o["nats"] as string | undefined;
  if (servers === undefined || servers.trim() === "") return undefined;
  const str = (k: string) => o[k] as string | undefined;
  return {
    servers,
    stream: str("natsStream"),
    prefix: str("natsSubjectPrefix"),
    retention: o["natsRetention"] as Retention,
    maxAgeMs: o["natsMaxAgeMs"] as number,
    maxBytes: o["natsMaxBytes"] as number,
    window: o["natsWindow"] as number,
    buffer: o["natsBuffer"] as number,
    ackTimeoutMs: o["natsAckTimeoutMs"] as number,
    lingerMs: o["natsLingerMs"] as number,
    hostToken: str("natsHostName"),
    ...natsConnectionFrom(o),
  };
}

/**
 * Checks the publisher's options as a start does before anything connects
 * (names, limits, credentials and the files they name): a UsageError says
 * what is wrong. For --print-config, and before the server opens its source.
 */
export function checkFleet(options: FleetOptions | undefined): void {
  if (options === undefined) return;
  try {
    checkFleetOptions(options);
  } catch (err) {
    if (err instanceof RangeError) throw new UsageError(err.message);
    throw err;
  }
  checkNatsPems(options);
}

/**
 * Connects the publisher (before the server starts: a wrong URL, refused
 * credentials or an incompatible stream stop `serve` with a clear message,
 * exit status 1; a bad flag value is a usage error). Once running, an
 * outage is retried for ever, with warnings, and the RPC service is not
 * affected.
 */
export async function openFleet(
  options: FleetOptions | undefined,
  log: (level: "info" | "warning", text: string) => void,
): Promise<FleetPublisher | undefined> {
  if (options === undefined) return undefined;
  try {
    const fleet = await startFleetPublisher({ ...options, log });
    log(
      "info",
      `fleet: publishing exits to NATS ${
        serverList(options.servers).map(redactUrl).join(", ")
      }, stream ${options.stream}, subjects ${options.prefix}.<host>.exits.<cpu>`,
    );
    return fleet;
  } catch (err) {
    if (err instanceof RangeError) throw new UsageError(err.message);
    if (err instanceof NatsConnectError || err instanceof StreamConfigError) throw new FleetStartError(err.message);
    throw new FleetStartError(`fleet: cannot start publishing to NATS: ${(err as Error).message}`);
  }
}

/** The publisher could not start; the CLI exits 1 with this message. */
export class FleetStartError extends Error {
  override readonly name = "FleetStartError";
}
