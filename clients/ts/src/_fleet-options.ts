/**
 * What watchFleet is given and gives: its options, the events it yields,
 * what it says of a bad message, and the function each entry (fleet.ts,
 * node.ts) exports. The runtime-neutral consumer is _fleet-core.ts.
 */
import type { ConnectionOptions, NatsConnection } from "@nats-io/nats-core";
import type { ExitEvent, ExitFilter } from "./gen/taskwire/v1/taskstats_pb.ts";
import type { FleetStatus } from "./_fleet-status.ts";

export type { FleetStatus };

/** An exit event from a fleet: the event, and the host (its subject token) it came from. */
export type FleetExitEvent = ExitEvent & { readonly host: string };

/** Options of watchFleet: a connection, or servers to connect to (with `auth`/`tls`). */
export interface WatchFleetOptions {
  /** A connection the caller made (and closes); else `servers` is connected to, and closed when the iteration ends. */
  readonly connection?: NatsConnection | undefined;
  /** NATS server URLs (Node: nats://host:4222; elsewhere: ws:// or wss:// URLs of a NATS websocket listener). */
  readonly servers?: string | readonly string[] | undefined;
  /** Connection options for `servers` (authenticator: credsAuthenticator, nkeyAuthenticator, tokenAuthenticator; tls). */
  readonly connectOptions?: Omit<ConnectionOptions, "servers"> | undefined;
  /** The stream (default "TASKWIRE_EXITS", the server's --nats-stream default). */
  readonly stream?: string | undefined;
  /** The subject prefix (default "taskwire"). */
  readonly subjectPrefix?: string | undefined;
  /** Hosts by subject token: a name, or a glob with * and ? ("web-*"); default every host. */
  readonly hosts?: string | undefined;
  /** Only exits on these CPUs (loss markers always come). */
  readonly cpus?: readonly number[] | undefined;
  /** Only exits matching this (as the server's ExitFilter: tgids, uids, comm prefix, nonzero exit); loss markers always come. */
  readonly filter?: Partial<Pick<ExitFilter, "tgids" | "uids" | "commPrefix" | "nonzeroExit">> | undefined;
  /**
   * A durable consumer's name: made if missing, and resumed where it left
   * off (each message is acked once the loop body that got its events
   * returns). Unset: an ordered consumer that lives as long as the iteration.
   * Stop a durable iteration by aborting `signal`: it then finishes the
   * messages it partly yielded (2 s at most, then the message in hand or the
   * next tick) before it ends, so the next one repeats nothing. A `break` may
   * leave one partly yielded, to come again whole (its yielded events
   * repeat; none is lost).
   */
  readonly durable?: string | undefined;
  /**
   * Where a new consumer starts: every stored message ("all"), or only new
   * ones ("new", the default without `durable`). A publisher's batch (one
   * message per CPU) it starts in the middle of comes from its start on:
   * the batch's earlier messages are neither waited on nor reported lost;
   * nor, when it starts at a message the publisher sent again, the seqs
   * stored before it (see _fleet-order.ts).
   */
  readonly deliver?: "all" | "new" | undefined;
  /** A durable consumer's ack wait, ms (default 30000): messages delivered and not acked come again after it. */
  readonly ackWaitMs?: number | undefined;
  /**
   * How long a gap in a host's seqs is waited on before it is reported as a
   * RETENTION loss, ms (default ackWaitMs + 5000: JetStream delivers a lost
   * delivery again after the ack wait); and most events held meanwhile
   * (default 65536). A gap that does not fill is messages the stream's
   * limits discarded before this consumer read them.
   */
  readonly reorder?: FleetReorderOptions | undefined;
  /**
   * Called for each message refused as bad (undecodable, more than 1024
   * events, seqs outside 1..2^53-1 or not increasing, an inconsistent loss
   * marker): it is skipped and terminated (JetStream does not deliver it
   * again), and every other message keeps flowing. Default: console.warn
   * once per host.
   */
  readonly onBadMessage?: ((info: FleetBadMessage) => void) | undefined;
  /** Called with the NATS connection's status changes (disconnected, reconnected, closed, server errors). */
  readonly onStatus?: ((status: FleetStatus) => void) | undefined;
  /**
   * Ends the iteration when aborted: an ordered consumer's after the message in hand, a durable one's once its
   * partly yielded messages are finished (2 s at most, then the message in hand or the next tick: about 3 s).
   */
  readonly signal?: AbortSignal | undefined;
}

/** Bounds of the per-host reorder buffer (see WatchFleetOptions.reorder). */
export interface FleetReorderOptions {
  /** How long a host's gap is waited on with its head not advancing, ms (default ackWaitMs + 5000). */
  readonly waitMs?: number;
  /** Most events held in all (default 65536). */
  readonly maxHeld?: number;
  /** Most bytes held in all (default 64 MiB; an event costs its share of its message's payload). */
  readonly maxHeldBytes?: number;
  /** Most publisher runs tracked in all (default 4096), and per host (default 16); least recently used go first. */
  readonly maxRuns?: number;
  readonly maxRunsPerHost?: number;
  /**
   * Most seqs remembered as yielded ahead of their host's order (a durable consumer's redeliveries, the rest of a
   * batch it started in), to know them when they come again: in all (default 524288, at most about 30 MB of heap, under
   * 50 MB with forged seqs past 2^31; 65536 per run).
   * Past it, the hosts remembering the most forget their oldest first; a seq forgotten is yielded again if
   * JetStream delivers it again.
   */
  readonly maxEarlySeqs?: number;
}

/** A message refused: its subject and host (as printable text), why, and how many this host sent so far. */
export interface FleetBadMessage {
  readonly subject: string;
  readonly host: string;
  readonly reason: string;
  readonly count: number;
}

/** How an entry connects to `servers`. */
export type FleetConnect = (options: ConnectionOptions) => Promise<NatsConnection>;

/** The watchFleet function an entry exports. */
export type WatchFleet = (options: WatchFleetOptions) => AsyncGenerator<FleetExitEvent, void, undefined>;

/**
 * Refuses numbers that would bound nothing or spin: NaN compares false with every count (maxEarlySeqs: NaN let a
 * forger's early seqs grow without end), and a NaN wait made the expiry tick every millisecond.
 */
export function checkFleetNumbers(o: Pick<WatchFleetOptions, "ackWaitMs" | "reorder">): void {
  const r = o.reorder;
  const ints: [string, number | undefined, number][] = [
    ["ackWaitMs", o.ackWaitMs, 1],
    ["reorder.maxHeld", r?.maxHeld, 0],
    ["reorder.maxHeldBytes", r?.maxHeldBytes, 0],
    ["reorder.maxRuns", r?.maxRuns, 1],
    ["reorder.maxRunsPerHost", r?.maxRunsPerHost, 1],
    ["reorder.maxEarlySeqs", r?.maxEarlySeqs, 0],
  ];
  for (const [name, v, lo] of ints) {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < lo)) {
      throw new RangeError(`watchFleet: ${name} must be an integer >= ${lo}, got ${v}`);
    }
  }
  if (r?.waitMs !== undefined && !(r.waitMs >= 0)) {
    throw new RangeError(`watchFleet: reorder.waitMs must be a number of ms >= 0, got ${r.waitMs}`);
  }
}
