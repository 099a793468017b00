/**
 * The server's EncodeGate (core/subscription.ts): a number of events per
 * event-loop turn that streams whose batches are dear to encode (JSON, field
 * masks) share. A stream past the turn's share waits for the next turn's
 * (setImmediate: after the loop has polled for I/O, so the source's records
 * and other streams' writes come between). The waiting are served
 * round-robin between principals, each one's streams in the order they
 * came, as the connection pacer (runtime/_pacer.ts) does: first come first
 * served, a principal with a thousand streams of one event a batch
 * (max_batch 1), each asking again as soon as served, kept the queue full,
 * and another principal's stream was served once in some 16 turns, and
 * then with what the turn had left.
 */
import { setImmediate } from "node:timers";
import type { EncodeGate } from "../core/subscription.ts";

/**
 * Events per turn, by default: a default batch (Limits.maxBatch), so a JSON
 * stream alone in the gate takes as much per turn as it would without it,
 * also when other work makes turns long (a share of 64 held one to 3-4k
 * exits/s while 1,024 binary streams opened, against 8-9k ungated); about
 * 20 ms of connect-es's JSON serialization of exits on this project's
 * machines, where 8 JSON streams' first batches, some 1,400 exits, took
 * 92-157 ms in one turn.
 */
export const GATE_EVENTS_PER_TURN = 256;

/** The server's gate: each stream asks with its principal's id (`key`), so that principals, not streams, share a turn. */
export interface SharedEncodeGate extends EncodeGate {
  admit(max: number, key?: string): number | Promise<number>;
  /** Streams waiting for a later turn. */
  readonly waiting: number;
}

/** A gate of `perTurn` events per event-loop turn; `defer` schedules the next turn (setImmediate). */
export function createEncodeGate(
  perTurn: number = GATE_EVENTS_PER_TURN,
  defer: (fn: () => void) => void = (fn) => void setImmediate(fn),
): SharedEncodeGate {
  if (!Number.isSafeInteger(perTurn) || perTurn < 1) {
    throw new RangeError(`events per turn must be a positive integer, got ${perTurn}`);
  }
  return new _Gate(perTurn, defer);
}

interface _Waiter {
  readonly max: number;
  readonly resolve: (n: number) => void;
}

class _Gate implements SharedEncodeGate {
  readonly #perTurn: number;
  readonly #defer: (fn: () => void) => void;
  #left: number;
  /** Each principal's waiting streams, in the order they came; principals in round-robin order (a Map keeps insertion order: one served goes to the back). */
  readonly #lanes = new Map<string, _Waiter[]>();
  #waiting = 0;
  /** A next turn is scheduled: it gives the share back and admits waiters. */
  #armed = false;

  constructor(perTurn: number, defer: (fn: () => void) => void) {
    this.#perTurn = perTurn;
    this.#defer = defer;
    this.#left = perTurn;
  }

  get waiting(): number {
    return this.#waiting;
  }

  admit(max: number, key = ""): number | Promise<number> {
    this.#arm();
    if (this.#waiting === 0 && this.#left > 0) return this.#take(max);
    return new Promise((resolve) => {
      const lane = this.#lanes.get(key);
      if (lane === undefined) this.#lanes.set(key, [{ max, resolve }]);
      else lane.push({ max, resolve });
      this.#waiting++;
    });
  }

  #take(max: number): number {
    const n = Math.max(1, Math.min(max, this.#left));
    this.#left -= n;
    return n;
  }

  #arm(): void {
    if (this.#armed) return;
    this.#armed = true;
    this.#defer(() => this.#turn());
  }

  // A new turn: its share, to the waiters first, a stream of each principal in turn. Armed again while any share was used.
  #turn(): void {
    this.#armed = false;
    this.#left = this.#perTurn;
    while (this.#waiting > 0 && this.#left > 0) {
      const [key, lane] = this.#lanes.entries().next().value!;
      this.#lanes.delete(key);
      const w = lane.shift()!;
      this.#waiting--;
      if (lane.length > 0) this.#lanes.set(key, lane);
      w.resolve(this.#take(w.max));
    }
    if (this.#waiting > 0 || this.#left < this.#perTurn) this.#arm();
  }
}
