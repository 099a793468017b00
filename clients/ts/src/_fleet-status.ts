/**
 * watchFleet's view of its NATS connection: the status changes worth a line
 * on a terminal (disconnected, reconnected, closed, a server error), so that
 * a consumer shows why no events come while NATS is down.
 */
import type { NatsConnection, Status } from "@nats-io/nats-core";
import { printable } from "./_fleet-message.ts";

/** A change of the NATS connection: its type (NATS's status type) and a line saying it. */
export interface FleetStatus {
  readonly type: string;
  readonly text: string;
}

/** The connection's status changes, to `cb` (when given), until stopped. */
export function statuses(nc: NatsConnection, cb: ((s: FleetStatus) => void) | undefined): { stop(): void } {
  if (cb === undefined) return { stop: () => {} };
  const it = nc.status() as AsyncIterable<Status> & { stop?: () => void };
  void (async () => {
    for await (const s of it) {
      const text = _statusText(s);
      if (text !== undefined) cb({ type: s.type, text });
    }
  })().catch(() => {});
  return { stop: () => it.stop?.() };
}

function _statusText(s: Status): string | undefined {
  switch (s.type) {
    case "disconnect":
      return `NATS disconnected from ${printable(s.server)}, reconnecting…`;
    case "reconnect":
      return `NATS reconnected to ${printable(s.server)}`;
    case "close":
      return "NATS connection closed";
    case "error":
      return `NATS error: ${printable(String(s.error?.message ?? s.error))}`;
    case "staleConnection":
      return "NATS connection stale, reconnecting…";
    default:
      return undefined;
  }
}
