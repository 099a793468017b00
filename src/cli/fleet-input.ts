/**
 * The fleet as an event input for `watch --nats URL --hosts GLOB` and
 * `top --nats URL`: watchFleet over the JetStream stream that `taskwire
 * serve --nats` servers publish to, yielding the same events as a server's
 * stream (the SDK's ExitEvent), each with its `host`. The NATS connection
 * takes the same credential and TLS files as `serve --nats-*` (never a
 * secret on the command line).
 */
// A namespace import: watchFleet is on the SDK's Node entry only (the browser bundle stays free of the NATS client),
// and Deno maps @taskwire/client to the portable mod.ts, where a named import of it would fail at load.
import * as sdk from "@taskwire/client";
import type { FleetExitEvent } from "@taskwire/client";
import type { NatsConnection } from "@nats-io/nats-core";
import type { NatsConnectionFlags } from "./nats-options.ts";
import { connectNats, type NatsSettings, redactUrl, serverList } from "../fleet/_connect.ts";

/** What to consume, from a command's flags. */
export interface FleetInputOptions extends Omit<NatsSettings, "servers" | "name"> {
  /** NATS server URLs (--nats), comma-separated. */
  readonly nats: string;
  /** Hosts by subject token: a name or a glob with * and ? (--hosts); default every host. */
  readonly hosts?: string | undefined;
  /** Only exits on these CPUs. */
  readonly cpus?: readonly number[] | undefined;
  /** Client-side filter, as the server's ExitFilter. */
  readonly filter?: { tgids?: number[]; uids?: number[]; commPrefix?: string; nonzeroExit?: boolean } | undefined;
  /** A durable consumer's name: resume where it left off (default: an ordered consumer from now on). */
  readonly durable?: string | undefined;
  /** Start with every stored message instead of new ones. */
  readonly all?: boolean | undefined;
  /** The stream and subject prefix the servers publish to (their --nats-stream, --nats-subject-prefix). */
  readonly stream?: string | undefined;
  readonly subjectPrefix?: string | undefined;
  /** Ends the input. */
  readonly signal: AbortSignal;
  /** A status line for stderr. */
  readonly status?: ((line: string) => void) | undefined;
}

/** An open fleet input: its events, and how to close its connection. */
export interface FleetInput {
  readonly events: AsyncIterable<FleetExitEvent>;
  /** Closes the NATS connection (idempotent). */
  release(): Promise<void>;
}

/**
 * Connects to NATS (NatsConnectError with the URL and cause when it cannot)
 * and opens the consumer; its events start flowing when iterated.
 */
export async function openFleetInput(o: FleetInputOptions): Promise<FleetInput> {
  const watchFleet = (sdk as Partial<typeof sdk>).watchFleet;
  if (watchFleet === undefined) {
    throw new TypeError("--nats needs the SDK's Node entry (@taskwire/client on Node); this runtime loaded another");
  }
  checkHosts(o.hosts);
  const nc: NatsConnection = await connectNats({ ...o, servers: o.nats, name: "taskwire watch" });
  o.status?.(`consuming exits from NATS ${serverList(o.nats).map(redactUrl).join(", ")}, hosts ${o.hosts ?? "*"}`);
  const status = o.status;
  const events = watchFleet({
    connection: nc,
    signal: o.signal,
    ...(status !== undefined && {
      onStatus: (s: { text: string }) => status(s.text),
      // Once per host, then at 10, 100, 1000...: a flood of bad messages must not flood the terminal.
      onBadMessage: (b: { subject: string; host: string; reason: string; count: number }) => {
        if (/^10*$/.test(String(b.count))) {
          status(
            `skipped ${
              b.count === 1 ? "a bad message" : `${b.count} bad messages`
            } from host ${b.host} (${b.subject}): ${b.reason}`,
          );
        }
      },
    }),
    ...(o.hosts !== undefined && { hosts: o.hosts }),
    ...(o.cpus !== undefined && { cpus: o.cpus }),
    ...(o.filter !== undefined && { filter: o.filter }),
    ...(o.durable !== undefined && { durable: o.durable }),
    ...(o.stream !== undefined && { stream: o.stream }),
    ...(o.subjectPrefix !== undefined && { subjectPrefix: o.subjectPrefix }),
    deliver: o.all === true ? "all" : "new",
  });
  return { events, release: () => nc.close().catch(() => {}) };
}

/**
 * --hosts names subject tokens (a host's name with "." made "_", as `serve
 * --nats` publishes it): RangeError saying which token to use.
 */
export function checkHosts(hosts: string | undefined): void {
  if (hosts === undefined || /^[A-Za-z0-9_*?-]+$/.test(hosts)) return;
  const token = hosts.replace(/[^A-Za-z0-9_*?-]/g, "_");
  throw new RangeError(
    `--hosts "${hosts}": hosts are subject tokens (A-Z a-z 0-9 _ - and the globs * ?), a host name's dots made "_": use --hosts ${token}`,
  );
}

/** The fleet flags of `watch` and `top`: consume from NATS JetStream instead of one server. */
export interface FleetFlags extends NatsConnectionFlags {
  readonly nats: string;
  readonly hosts?: string | undefined;
  readonly durable?: string | undefined;
  readonly all?: boolean | undefined;
  readonly stream?: string | undefined;
  readonly subjectPrefix?: string | undefined;
}
