/**
 * One SubscribeExits stream: drains a listener's queue in batches (whatever
 * is queued, up to a cap: one event when traffic is light, many when it is
 * heavy) only as fast as the transport pulls, with heartbeats when idle.
 * Cleanup hangs on the abort signal, since a generator's `finally` does not
 * run reliably after a client cancels on HTTP/2.
 */
import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { SubscribeExitsResponseSchema, type SubscribeExitsResponse } from "../gen/taskwire/v1/taskstats_pb.ts";
import { toExitEvent } from "./convert.ts";
import { preEncodedBatch } from "./fast-binary/batch.ts";
import { ShuttingDownError, StreamTakenOverError } from "./errors.ts";
import type { StreamItem } from "../core/retention.ts";
import type { Listener, StreamEnd } from "../core/listener.ts";
import type { Projection } from "./projection.ts";
import type { ListenerRegistry } from "../core/registry.ts";

/** How a stream runs. */
export interface StreamOptions {
  readonly maxBatch: number;
  readonly heartbeatMs: number;
  readonly signal: AbortSignal;
  /** Field mask for TaskStats, if any. */
  readonly project?: Projection;
  /** The client reads protobuf binary. */
  readonly binary?: boolean;
  /** Items to send before the queue: a resumed stream's replay. */
  readonly replay?: StreamItem[];
}

interface Ended {
  readonly why: string;
  readonly how: StreamEnd;
}

// Takeover: another stream has the listener (ABORTED, do not retry). Shutdown:
// the server is going away (UNAVAILABLE, reconnect elsewhere or later).
const END_ERRORS: Partial<Record<StreamEnd, new (message: string) => Error>> = { takeover: StreamTakenOverError, shutdown: ShuttingDownError };

/** Streams `listener` until the client goes, the listener is removed, or another stream takes over. */
export async function* streamListener(registry: ListenerRegistry, listener: Listener, o: StreamOptions): AsyncGenerator<SubscribeExitsResponse> {
  let resolveWait: ((woke: boolean) => void) | undefined;
  let resolvePause: (() => void) | undefined;
  let ended: Ended | undefined;
  const wake = (): void => {
    const r = resolveWait;
    resolveWait = undefined;
    r?.(true);
  };
  const end = (why: string, how: StreamEnd): void => {
    ended = { why, how };
    resolvePause?.();
    wake();
  };
  listener.attach(wake, end);
  const cleanup = (): void => {
    listener.detach(end, registry.now());
    if (listener.ephemeral) registry.remove(listener, "its stream ended");
    resolvePause?.();
    wake();
  };
  // A pause that only the stream's end or abort cuts short (new events do not).
  const pause = (ms: number): Promise<void> => new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      resolvePause = undefined;
      resolve();
    }
    resolvePause = done;
  });
  o.signal.addEventListener("abort", cleanup, { once: true });
  if (o.signal.aborted) cleanup();
  const message = (fields: MessageInitShape<typeof SubscribeExitsResponseSchema>): SubscribeExitsResponse =>
    create(SubscribeExitsResponseSchema, { cpumask: registry.cpumaskOf(listener), queued: listener.queue.depth, ...fields });
  // Binary streams without a field mask get their batches pre-encoded (the hot path).
  const batch = o.binary && o.project === undefined
    ? (items: StreamItem[]) => preEncodedBatch(items, listener.queue.depth)
    : (items: StreamItem[]) => create(SubscribeExitsResponseSchema, { events: items.map((item) => toExitEvent(item, o.project)), queued: listener.queue.depth });
  try {
    yield message({ listenerId: listener.id });
    const replay = o.replay ?? [];
    for (let i = 0; i < replay.length && !o.signal.aborted && ended === undefined; i += o.maxBatch) {
      yield batch(replay.slice(i, i + o.maxBatch));
    }
    for (;;) {
      if (o.signal.aborted) return;
      const error = ended && END_ERRORS[ended.how];
      if (error !== undefined) throw new error(`listener ${listener.id}: ${ended!.why}`);
      if (listener.queue.length > 0) {
        const items = listener.take(o.maxBatch);
        yield batch(items);
        // A partial batch while the loop is saturated: let the next one grow (no delay otherwise).
        const linger = items.length < o.maxBatch ? registry.lingerMs() : 0;
        if (linger > 0 && !o.signal.aborted && ended === undefined) await pause(linger);
        continue;
      }
      // A removed listener's stream ends normally once what it had queued is sent.
      if (ended !== undefined) return;
      const woke = await waitFor(o.heartbeatMs, (r) => (resolveWait = r));
      resolveWait = undefined;
      if (!woke && listener.queue.length === 0 && ended === undefined && !o.signal.aborted) yield message({ heartbeat: true });
    }
  } finally {
    o.signal.removeEventListener("abort", cleanup);
    cleanup();
  }
}

function waitFor(ms: number, register: (resolve: (woke: boolean) => void) => void): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    register((woke) => {
      clearTimeout(timer);
      resolve(woke);
    });
  });
}
