/**
 * The streams of one listener, each known by its `end`: the one attached
 * (woken as events come), the one still sending a removed listener's queue,
 * and taken-over ones; and what each holds past the queue (HeldBatches).
 */
import type { CpuRecord } from "./event-queue.ts";
import type { HeldBatches, StreamEndFn } from "./_held-batches.ts";
import type { StreamEnd } from "./listener-options.ts";

/** A listener's streams (Listener's attach, detach, close and stall sweeps go through it). */
export class ListenerStreams<R extends CpuRecord> {
  /** What its streams hold: the batch in flight, taken-over streams' batches, replay batches. */
  readonly held: HeldBatches<R>;
  /** The attached stream's wake-up, if any. */
  #wake: (() => void) | undefined;
  /** Ends the attached stream (takeover, removal). */
  #end: StreamEndFn | undefined;
  /** The stream still sending a removed listener's queue (close(..., "removed") took it from #end). */
  #drainEnd: StreamEndFn | undefined;

  constructor(held: HeldBatches<R>) {
    this.held = held;
  }

  /** A stream is attached. */
  get attached(): boolean {
    return this.#end !== undefined;
  }

  /** The attached stream, or else the one draining a removed listener. */
  get current(): StreamEndFn | undefined {
    return this.#end ?? this.#drainEnd;
  }

  /** Neither a draining stream nor a taken-over one holds anything. */
  get letGo(): boolean {
    return this.#drainEnd === undefined && this.held.orphans === 0;
  }

  /** Wakes the attached stream, if any. */
  wake(): void {
    this.#wake?.();
  }

  /** Attaches a stream; an attached one is ended first (takeover), and its batch in flight stays charged. */
  attach(wake: () => void, end: StreamEndFn): void {
    const old = this.#end;
    if (old !== undefined) {
      this.held.takenOver(old);
      old("another stream subscribed to this listener", "takeover");
    }
    this.#wake = wake;
    this.#end = end;
  }

  /**
   * Detaches the stream whose `end` this is: a taken-over one gives back the
   * batch it held; of a removed listener (`retired`), only its draining
   * stream detaches. Returns whether the attached stream did.
   */
  detach(end: StreamEndFn, retired: boolean): boolean {
    this.held.detached(end);
    if (retired) {
      if (end === this.#drainEnd) this.stopDraining();
      return false;
    }
    if (this.#end !== end) return false;
    this.#wake = undefined;
    this.#end = undefined;
    this.held.written();
    return true;
  }

  /** The attached stream, if it is `end`, wrote the batch it took last. */
  sent(end: StreamEndFn): void {
    if (this.#end === end) this.held.written();
  }

  /** No stream sends a removed listener's queue any more: its batch in flight is given back. */
  stopDraining(): void {
    this.#drainEnd = undefined;
    this.held.written();
  }

  /** Tells each stream that has held a batch for `ms` that it stalled (Listener.endStalled); how many were told. */
  endStalled(now: number, ms: number, why: string | undefined): number {
    const ends = this.held.stalled(now, ms, this.current, why !== undefined);
    for (const end of ends) end(why!, "stalled");
    return ends.length;
  }

  /** Ends the attached stream; "removed" keeps it as the one draining the queue. */
  close(why: string, how: StreamEnd): void {
    const end = this.#end;
    this.#wake = undefined;
    this.#end = undefined;
    if (how === "removed") this.#drainEnd = end;
    end?.(why, how);
  }
}
