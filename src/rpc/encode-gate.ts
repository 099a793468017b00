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
 *
 * The share follows what the events it let through cost of late, so that
 * a turn's batches take about GATE_MS_PER_TURN: what an event costs to
 * build and serialize varies tenfold with the serializer's warmth and the
 * CPU's load.
 */
import { setImmediate } from "node:timers";
import type { EncodeGate } from "../core/subscription.ts";

/**
 * Events per turn, at most: a default batch (Limits.maxBatch), so a JSON
 * stream alone in the gate takes as much per turn as it would without it,
 * also when other work makes turns long (a share of 64 held one to 3-4k
 * exits/s while 1,024 binary streams opened, against 8-9k ungated).
 */
export const GATE_EVENTS_PER_TURN = 256;

/**
 * The time the batches a turn lets through may take, ms: 256 exits took 13
 * ms to serialize as Connect JSON, warm, on a 2-CPU machine with little else
 * running, and 150-256 ms to build and serialize in the first turns of an
 * attack of 8 never-reading JSON streams on the same machine loaded (cold
 * serializer, other processes on the CPUs), while the exits that came due
 * meanwhile arrived at once past a reading principal's fair share (69 ms of
 * exits at 20,000 a second in an 8 MiB budget shared by two principals).
 */
export const GATE_MS_PER_TURN = 16;

/** The least share, however dear events were of late (a turn the OS took the CPU from is no measure of them). */
const LEAST_SHARE = 16;

/** The server's gate: each stream asks with its principal's id (`key`), so that principals, not streams, share a turn. */
export interface SharedEncodeGate extends EncodeGate {
  admit(max: number, key?: string): number | Promise<number>;
  /** Streams waiting for a later turn. */
  readonly waiting: number;
  /** The events the next turn lets through. */
  readonly share: number;
}

/** How a gate shares out turns. */
export interface EncodeGateOptions {
  /** Events per turn, at most (default GATE_EVENTS_PER_TURN). */
  readonly eventsPerTurn?: number;
  /**
   * The time a turn's batches may take, ms (default GATE_MS_PER_TURN): the
   * share starts at LEAST_SHARE and follows the time the batches let
   * through took (from the turn to the next callback `defer` runs), growing
   * at most twofold a turn. Infinity: every turn lets `eventsPerTurn` through.
   */
  readonly msPerTurn?: number;
  /** Schedules a callback after the loop has polled for I/O (setImmediate); two scheduled at once run in that order. */
  readonly defer?: (fn: () => void) => void;
  /** The clock, ms (performance.now). */
  readonly now?: () => number;
}

/** A gate of as many events per event-loop turn as take `msPerTurn`, at most `eventsPerTurn`. */
export function createEncodeGate(options: EncodeGateOptions = {}): SharedEncodeGate {
  const { eventsPerTurn = GATE_EVENTS_PER_TURN, msPerTurn = GATE_MS_PER_TURN } = options;
  if (!Number.isSafeInteger(eventsPerTurn) || eventsPerTurn < 1) {
    throw new RangeError(`events per turn must be a positive integer, got ${eventsPerTurn}`);
  }
  if (!(msPerTurn > 0)) throw new RangeError(`ms per turn must be a positive number (or Infinity), got ${msPerTurn}`);
  return new _Gate(eventsPerTurn, msPerTurn === Infinity ? undefined : msPerTurn, {
    defer: options.defer ?? ((fn) => void setImmediate(fn)),
    now: options.now ?? (() => performance.now()),
  });
}

interface _Waiter {
  readonly max: number;
  readonly resolve: (n: number) => void;
}

class _Gate implements SharedEncodeGate {
  readonly #most: number;
  /** Undefined: no time limit, the share is always #most. */
  readonly #msPerTurn: number | undefined;
  readonly #defer: (fn: () => void) => void;
  readonly #now: () => number;
  #share: number;
  #left: number;
  /** Each principal's waiting streams, in the order they came; principals in round-robin order (a Map keeps insertion order: one served goes to the back). */
  readonly #lanes = new Map<string, _Waiter[]>();
  #waiting = 0;
  /** A next turn is scheduled: it gives the share back and admits waiters. */
  #armed = false;
  /** When the turn being measured began (undefined: none is), and the events taken since. */
  #turnStart: number | undefined;
  #taken = 0;

  constructor(most: number, msPerTurn: number | undefined, o: Required<Pick<EncodeGateOptions, "defer" | "now">>) {
    this.#most = most;
    this.#msPerTurn = msPerTurn;
    this.#defer = o.defer;
    this.#now = o.now;
    this.#share = msPerTurn === undefined ? most : Math.min(most, LEAST_SHARE);
    this.#left = this.#share;
  }

  get waiting(): number {
    return this.#waiting;
  }

  get share(): number {
    return this.#share;
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
    this.#taken += n;
    return n;
  }

  #arm(): void {
    if (this.#armed) return;
    this.#armed = true;
    this.#defer(() => this.#turn());
    // Right after the turn, once the streams it let through have made and handed on their batches (the microtasks
    // between two immediates run to the end): the time they took.
    if (this.#msPerTurn !== undefined) this.#defer(() => this.#measure());
  }

  // A new turn: its share, to the waiters first, a stream of each principal in turn. Armed again while any share was used.
  #turn(): void {
    this.#armed = false;
    this.#left = this.#share;
    this.#turnStart = this.#now();
    this.#taken = 0;
    while (this.#waiting > 0 && this.#left > 0) {
      const [key, lane] = this.#lanes.entries().next().value!;
      this.#lanes.delete(key);
      const w = lane.shift()!;
      this.#waiting--;
      if (lane.length > 0) this.#lanes.set(key, lane);
      w.resolve(this.#take(w.max));
    }
    if (this.#waiting > 0 || this.#left < this.#share) this.#arm();
  }

  // The next turn's share: as many events as the time per turn holds at what the last turn's cost, within twice this one's.
  #measure(): void {
    const start = this.#turnStart;
    this.#turnStart = undefined;
    if (start === undefined || this.#taken === 0) return;
    const ms = Math.max(this.#now() - start, 1e-3);
    const fits = Math.floor((this.#msPerTurn! * this.#taken) / ms);
    this.#share = Math.max(Math.min(LEAST_SHARE, this.#most), Math.min(fits, 2 * this.#share, this.#most));
  }
}
