/**
 * @module
 * The SDK on Node: everything in mod.ts, with createTaskwireClient over
 * connect-node's HTTP/1.1 client, which cancels streams reliably on Node
 * (aborting a long fetch body stream can hang on Node 20's fetch).
 */
import { createGrpcTransport } from "@connectrpc/connect-node";
import { connect as connectNats } from "@nats-io/transport-node";
import { clientFactory } from "./client.ts";
import { GuardedSessionManager } from "./_guarded-sessions.ts";
import { createNodeH1Transport } from "./_node-h1.ts";
import { createWatchFleet } from "./_fleet-core.ts";
import type { WatchFleet } from "./_fleet-options.ts";
import { withServerIdentity } from "./_nats-tls.ts";
import { nodeTlsAdvice } from "./_transport-failures.ts";

export * from "./mod.ts";

export type {
  FleetBadMessage,
  FleetExitEvent,
  FleetReorderOptions,
  FleetStatus,
  WatchFleet,
  WatchFleetOptions,
} from "./_fleet-options.ts";

/**
 * watchFleet (see fleet.ts, the "./fleet" entry for other runtimes)
 * connecting to `servers` over TCP (nats://, tls://) with
 * @nats-io/transport-node. Only on Node's entry: the browser bundle stays
 * free of the NATS client. With TLS (`connectOptions.tls`, or a tls:// URL,
 * which then requires it), a server given by IP address must present a
 * certificate for that address (nats.js alone checks "localhost" there).
 */
export const watchFleet: WatchFleet = createWatchFleet(async (o) => connectNats(await withServerIdentity(o)));

/**
 * Creates a client for the taskwire server at `baseUrl` (e.g.
 * "http://127.0.0.1:7878") over connect-node's HTTP/1.1 client, or real gRPC
 * over HTTP/2 with `protocol: "grpc"`. Pass `transport` to bring your own.
 */
export const createTaskwireClient = clientFactory((settings) => {
  const { tls, ...s } = settings;
  const nodeOptions = tls === undefined
    ? {}
    : { nodeOptions: Object.fromEntries(Object.entries(tls).filter(([, v]) => v !== undefined)) };
  if (s.protocol === "grpc") {
    // connect-node's own manager, but for uncaught session errors (_guarded-sessions.ts).
    const sessionManager = new GuardedSessionManager(s.baseUrl, {}, nodeOptions.nodeOptions);
    return createGrpcTransport({ ...s, ...nodeOptions, sessionManager });
  }
  // connect-node's, but for an empty request body on Deno's node:tls (_node-h1.ts).
  return createNodeH1Transport({ ...s, protocol: s.protocol }, nodeOptions.nodeOptions);
}, nodeTlsAdvice);
