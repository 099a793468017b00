import type { OverflowPolicy, ExitEvent } from "./gen/taskwire/v1/taskstats_pb.ts";
import type { TaskwireClient } from "./client.ts";

/** What the server said when the stream opened. */
export interface Subscribed {
  readonly listenerId: string;
  readonly cpumask: string;
}

/** Options of watchExits: exactly one of `cpumask` and `listenerId`. */
export type WatchExitsOptions = ({ cpumask: string; listenerId?: undefined } | { listenerId: string; cpumask?: undefined }) & {
  /** Queue size for an ephemeral listener (0 or unset: the server default). */
  buffer?: number;
  /** Overflow policy for an ephemeral listener. */
  overflow?: OverflowPolicy;
  /** Most events per stream message (unset: the server default). */
  maxBatch?: number;
  /** Heartbeat interval on idle streams, ms (unset: the server default). */
  heartbeatMs?: number;
  /** Ends the iteration (and the server-side stream) when aborted. */
  signal?: AbortSignal;
  /** Called once the server confirms the subscription, before any event. */
  onSubscribed?: (info: Subscribed) => void;
};

/**
 * Iterates a listener's events: exits, and `lost` events that account for
 * every record this listener did not get (so received + lost = produced).
 * Heartbeats are consumed silently. Breaking out of the loop or aborting
 * `signal` ends the server-side stream.
 */
export async function* watchExits(client: TaskwireClient, options: WatchExitsOptions): AsyncGenerator<ExitEvent, void, undefined> {
  if ((options.cpumask === undefined) === (options.listenerId === undefined)) {
    throw new TypeError("watchExits: pass exactly one of cpumask (an ephemeral listener) or listenerId (from register)");
  }
  const ctl = new AbortController();
  const onAbort = () => ctl.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const stream = client.subscribeExits(
      {
        cpumask: options.cpumask ?? "", listenerId: options.listenerId ?? "", buffer: options.buffer ?? 0,
        ...(options.overflow !== undefined && { overflow: options.overflow }),
        maxBatch: options.maxBatch ?? 0, heartbeatMs: options.heartbeatMs ?? 0,
      },
      { signal: ctl.signal },
    );
    let first = true;
    for await (const msg of stream) {
      if (first) {
        first = false;
        options.onSubscribed?.({ listenerId: msg.listenerId, cpumask: msg.cpumask });
      }
      yield* msg.events;
    }
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    ctl.abort();
  }
}
