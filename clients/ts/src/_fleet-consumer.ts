/**
 * watchFleet's JetStream consumer: an ordered one that lives as long as its
 * iteration (deleted at its end), or a durable one the caller names, made
 * with explicit acks when the server does not have it yet.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { AckPolicy, type Consumer, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { sleep } from "./_sleep.ts";

/** What of watchFleet's options picks its consumer (WatchFleetOptions' fields of these names). */
export interface ConsumerChoice {
  readonly stream?: string | undefined;
  readonly durable?: string | undefined;
  readonly deliver?: "all" | "new" | undefined;
  readonly ackWaitMs?: number | undefined;
}

/** The consumer `o` asks for on `subject`: an ordered one for the iteration, or the durable it names (made if new). */
export async function fleetConsumer(nc: NatsConnection, o: ConsumerChoice, subject: string): Promise<Consumer> {
  const js = jetstream(nc);
  const stream = o.stream ?? "TASKWIRE_EXITS";
  const deliver = (o.deliver ?? (o.durable === undefined ? "new" : "all")) === "all"
    ? DeliverPolicy.All
    : DeliverPolicy.New;
  if (o.durable === undefined) {
    // Deleted when the iteration ends; the threshold is for a process that dies first. A live iteration pulls every
    // 5 s while its loop reads; a loop body slower than the threshold loses the consumer, and nats.js remakes it
    // where it left off (nothing lost or repeated; nats.js's remade ones have a 5-minute threshold).
    const opts = { filter_subjects: subject, deliver_policy: deliver, inactive_threshold: ORDERED_INACTIVE_MS };
    return await js.consumers.get(stream, opts).catch(missing(stream));
  }
  const jsm = await jetstreamManager(nc);
  await jsm.streams.info(stream).catch(missing(stream));
  const existing = await jsm.consumers.info(stream, o.durable).catch(() => undefined);
  if (existing === undefined) {
    await jsm.consumers.add(stream, {
      durable_name: o.durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: deliver,
      filter_subject: subject,
      ack_wait: (o.ackWaitMs ?? 30_000) * 1e6,
    });
  } else if ((existing.config.filter_subject ?? "") !== subject) {
    throw new RangeError(
      `watchFleet: the durable consumer "${o.durable}" filters ${
        existing.config.filter_subject ?? "(all)"
      }, not ${subject}; use another durable name or delete it`,
    );
  }
  return await js.consumers.get(stream, o.durable);
}

// An ordered consumer lives as long as its iteration: nats.js does not delete it on close, and the server would keep
// it until its inactive threshold. Best effort, 1 s at most: a connection that is closed or down, or a user without
// the permission to delete consumers, leaves it to the threshold. One the server does not have may be one nats.js is
// remaking under its next name (a server restart lost it; nats.js remakes it even once closed): tried once more, by
// the name nats.js has by then.
/** Deletes an iteration's ordered consumer, best effort, in at most DELETE_MS (see above). */
export async function deleteConsumer(consumer: Consumer): Promise<void> {
  const until = Date.now() + DELETE_MS;
  // True when the server has no such consumer (10014); false when deleted or refused; undefined when out of time.
  const missing = () =>
    _within(
      consumer.delete().then(() => false, (err: unknown) => (err as { code?: unknown }).code === 10014),
      until - Date.now(),
    );
  if (await missing() !== true) return;
  await sleep(Math.max(0, Math.min(DELETE_RETRY_MS, until - Date.now())), undefined);
  await missing();
}

// `p`'s value, or undefined once `ms` have passed.
async function _within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), Math.max(0, ms))));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

const DELETE_MS = 1000;
const DELETE_RETRY_MS = 250;
const ORDERED_INACTIVE_MS = 60_000;

// A missing stream is most likely no publisher yet, or another --nats-stream: say so.
function missing(stream: string): (err: unknown) => never {
  return (err) => {
    if ((err as { code?: unknown }).code !== 10059) throw err;
    throw new RangeError(
      `watchFleet: NATS has no JetStream stream "${stream}": start a taskwire serve --nats first, or pass the stream its --nats-stream names`,
      { cause: err },
    );
  };
}
