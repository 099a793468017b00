/**
 * @module
 * watchFleet: the exits of many taskwire servers through NATS JetStream
 * (`taskwire serve --nats`), as one async iterator of ExitEvents with their
 * host. This entry connects to `servers` over WebSocket (browsers, Deno,
 * Bun: a NATS server with a websocket listener); on Node the package's
 * "node" export connects over TCP. Pass `connection` to bring your own.
 */
import { wsconnect } from "@nats-io/nats-core";
import { createWatchFleet } from "./_fleet-core.ts";
import type { WatchFleet } from "./_fleet-options.ts";

export type {
  FleetBadMessage,
  FleetExitEvent,
  FleetReorderOptions,
  FleetStatus,
  WatchFleet,
  WatchFleetOptions,
} from "./_fleet-options.ts";

/**
 * Yields every exit (and loss marker) the fleet's servers publish, from the
 * hosts and CPUs asked for, each with its `host`. Per host, events come in
 * seq order, and received + lost = produced as on an RPC stream.
 */
export const watchFleet: WatchFleet = createWatchFleet(wsconnect);
