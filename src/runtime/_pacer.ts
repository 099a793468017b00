/**
 * Pacing of new connections' first requests: a batch per event-loop turn,
 * shared fairly between callers.
 *
 * A storm of connections (2,000 SubscribeExits streams, each on its own
 * HTTP/1.1 connection) used to be one long turn: their requests arrive
 * together, libuv reads every one of them in one poll phase, and each costs
 * a fraction of a millisecond to route, authenticate and admit or refuse.
 * For a second or more no established stream was written and no unary call
 * answered. Pacing at accept does not help (the sockets are accepted long
 * before their requests arrive), so the first request of each connection is
 * paced instead: at most `perTurn` of them are served per turn, and requests
 * on connections already serving go straight through (up to a budget per turn,
 * createTurnBudget). The batch is shared
 * round-robin between callers (principals; the address for callers without
 * one), each in arrival order, so one caller's storm delays another caller's
 * new connection by a turn, not by the whole storm. On an idle server a
 * paced request waits one setImmediate.
 */
import type { Logger } from "@logtape/logtape";
import { logUnexpected } from "../log/error-log.ts";
import { taskwireLogger } from "../log/logger.ts";

/** A pacer: pace(caller, task) runs the task in this turn's batch or a later one. */
export interface Pacer {
  /**
   * Queues `task` for `caller`. `abandoned`, if given, is asked as its turn comes: a task abandoned by then (its
   * client left while it waited) is dropped without running and without taking a place in the batch.
   */
  (caller: string, task: () => void, abandoned?: () => boolean): void;
  /** Tasks queued and not yet run. */
  readonly waiting: number;
}

// A task that throws fails its own request only (its connection's handlers answer or close it); the batch goes on.
function run(task: () => void, logger: Logger): void {
  try {
    task();
  } catch (err) {
    logUnexpected("serving a request failed", err, {}, logger);
  }
}

/**
 * Abandoned tasks dropped per turn beyond the batch: a session closed for rapid reset leaves thousands, each
 * dropped in well under a microsecond, and a bound keeps even that turn short.
 */
const DROPS_PER_TURN = 4096;

/** Runs at most `perTurn` queued tasks per event-loop turn, round-robin between callers. */
export function createPacer(perTurn: number, logger: Logger = taskwireLogger()): Pacer {
  checkPerTurn(perTurn);
  // In round-robin order: a caller served goes to the back (Map keeps insertion order).
  const queues = new Map<string, Fifo<Queued>>();
  let waiting = 0;
  let scheduled = false;
  // The next task of the caller at the front, which then goes to the back (or away, its queue empty).
  const next = (): Queued => {
    const [caller, queue] = queues.entries().next().value!;
    queues.delete(caller);
    const queued = queue.shift();
    waiting--;
    if (queue.length > 0) queues.set(caller, queue);
    return queued;
  };
  const drain = (): void => {
    scheduled = false;
    for (let n = 0, dropped = 0; n < perTurn && waiting > 0;) {
      const { task, abandoned } = next();
      if (abandoned?.() !== true) {
        run(task, logger);
        n++;
      } else if (++dropped >= DROPS_PER_TURN) break;
    }
    if (waiting > 0) schedule();
  };
  const schedule = (): void => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(drain);
  };
  const pace = (caller: string, task: () => void, abandoned?: () => boolean): void => {
    const queue = queues.get(caller);
    const queued = abandoned === undefined ? { task } : { task, abandoned };
    if (queue === undefined) queues.set(caller, new Fifo(queued));
    else queue.push(queued);
    waiting++;
    schedule();
  };
  return Object.defineProperty(pace, "waiting", { get: () => waiting }) as Pacer;
}

interface Queued {
  readonly task: () => void;
  readonly abandoned?: () => boolean;
}

/**
 * A first-in first-out queue whose shift() is O(1): an array's shift() copies what is left once the array is
 * large, and a rapid-reset storm queued tens of thousands of one caller's requests (the drain took 5.6 s of CPU
 * in 5 s, most of it moving them).
 */
class Fifo<T> {
  #items: T[];
  #head = 0;
  constructor(first: T) {
    this.#items = [first];
  }
  get length(): number {
    return this.#items.length - this.#head;
  }
  push(item: T): void {
    this.#items.push(item);
  }
  shift(): T {
    const item = this.#items[this.#head]!;
    this.#items[this.#head++] = undefined as T; // let it go
    if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}

/** A turn budget: take() says whether this event-loop turn still has room for one more. */
export interface TurnBudget {
  take(): boolean;
}

/**
 * At most `perTurn` takes per event-loop turn. Requests on connections already serving skip the pacer; 200 h2c
 * connections each writing 100 streams every 50 ms put ~20,000 of them in one poll phase, all routed in that turn
 * (stalls of 1-3.7 s). Past the budget they are paced too. The count restarts in the check phase after the poll
 * phase that spent it (a setImmediate scheduled by the first take), so normal traffic never waits.
 */
export function createTurnBudget(perTurn: number): TurnBudget {
  checkPerTurn(perTurn);
  let taken = 0;
  const restart = (): void => {
    taken = 0;
  };
  return {
    take: () => {
      if (taken === 0) setImmediate(restart);
      if (taken >= perTurn) return false;
      taken++;
      return true;
    },
  };
}

function checkPerTurn(perTurn: number): void {
  if (!Number.isInteger(perTurn) || perTurn < 1) {
    throw new RangeError(`perTurn must be a whole number >= 1, got ${perTurn}`);
  }
}
