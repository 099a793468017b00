/**
 * The server's EncodeGate (core/subscription.ts): a number of events per
 * event-loop turn that streams whose batches are dear to encode (JSON, field
 * masks) share, first come first served. A stream past the turn's share
 * waits for the next turn's (setImmediate: after the loop has polled for
 * I/O, so the source's records and other streams' writes come between).
 */
import { setImmediate } from "node:timers";
import type { EncodeGate } from "../core/subscription.ts";

/**
 * Events per turn, by default: about 5 ms of connect-es's JSON serialization
 * of exits on this project's machines (8 JSON streams' first batches, some
 * 1,400 exits, took 92-157 ms in one turn).
 */
export const GATE_EVENTS_PER_TURN = 64;

/** A gate of `perTurn` events per event-loop turn; `defer` schedules the next turn (setImmediate). */
export function createEncodeGate(
  perTurn: number = GATE_EVENTS_PER_TURN,
  defer: (fn: () => void) => void = (fn) => void setImmediate(fn),
): EncodeGate {
  if (!Number.isSafeInteger(perTurn) || perTurn < 1) {
    throw new RangeError(`events per turn must be a positive integer, got ${perTurn}`);
  }
  return new _Gate(perTurn, defer);
}

interface _Waiter {
  readonly max: number;
  readonly resolve: (n: number) => void;
}

class _Gate implements EncodeGate {
  readonly #perTurn: number;
  readonly #defer: (fn: () => void) => void;
  #left: number;
  readonly #waiting: _Waiter[] = [];
  /** A next turn is scheduled: it gives the share back and admits waiters. */
  #armed = false;

  constructor(perTurn: number, defer: (fn: () => void) => void) {
    this.#perTurn = perTurn;
    this.#defer = defer;
    this.#left = perTurn;
  }

  admit(max: number): number | Promise<number> {
    this.#arm();
    if (this.#waiting.length === 0 && this.#left > 0) return this.#take(max);
    return new Promise((resolve) => this.#waiting.push({ max, resolve }));
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

  // A new turn: its share, to the waiters first, in the order they came. Armed again while any share was used.
  #turn(): void {
    this.#armed = false;
    this.#left = this.#perTurn;
    while (this.#waiting.length > 0 && this.#left > 0) {
      const w = this.#waiting.shift()!;
      w.resolve(this.#take(w.max));
    }
    if (this.#waiting.length > 0 || this.#left < this.#perTurn) this.#arm();
  }
}
