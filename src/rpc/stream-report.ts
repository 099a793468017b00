/**
 * What one SubscribeExits stream did, for whoever watches calls (the access
 * log): its listener, the events it handed to the transport, and the seqs it
 * told its client were lost, by reason. Whoever wants it puts a report in the
 * call's context values (STREAM_REPORT); the stream fills it in as it goes,
 * a few additions per batch and nothing per event beyond a counter. Without
 * one, a stream does no counting at all.
 */
import { createContextKey } from "@connectrpc/connect";
import type { CpuRecord, LossKind } from "../core/event-queue.ts";
import type { StepEncoder } from "../core/subscription.ts";
import type { StreamItem } from "../core/retention.ts";

/** One stream's counts so far. */
export interface StreamReport {
  /** The listener streamed ("" until the stream has one). */
  listenerId: string;
  /** Exits handed to the transport (replayed ones included). */
  events: number;
  /** Seqs reported lost to the client, by reason (loss markers' ranges). */
  readonly lost: Partial<Record<LossKind, number>>;
  /** Dropped at its transport because its client took no batch for a lease while the memory budget was full. */
  stalled?: boolean;
}

/** The context key a call's observer sets to receive its stream's report. */
export const STREAM_REPORT = createContextKey<StreamReport | undefined>(undefined, {
  description: "taskwire stream report",
});

/** A new, empty report. */
export function newStreamReport(): StreamReport {
  return { listenerId: "", events: 0, lost: {} };
}

/** `encode`, counting what each batch carries into `report` (none: `encode` as it is). */
export function countedEncoder<R extends CpuRecord, P, M>(
  encode: StepEncoder<R, P, M>,
  report: StreamReport | undefined,
): StepEncoder<R, P, M> {
  if (report === undefined) return encode;
  const batch = (items: readonly StreamItem<R, P>[]): M => {
    let events = items.length;
    for (const item of items) {
      if (item.kind !== "lost") continue;
      events--;
      report.lost[item.reason] = (report.lost[item.reason] ?? 0) + item.last - item.first + 1;
    }
    report.events += events;
    return encode.batch(items);
  };
  return { ...encode, batch };
}
