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
 * on connections already serving go straight through. The batch is shared
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
  (caller: string, task: () => void): void;
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

/** Runs at most `perTurn` queued tasks per event-loop turn, round-robin between callers. */
export function createPacer(perTurn: number, logger: Logger = taskwireLogger()): Pacer {
  if (!Number.isInteger(perTurn) || perTurn < 1) {
    throw new RangeError(`perTurn must be a whole number >= 1, got ${perTurn}`);
  }
  // In round-robin order: a caller served goes to the back (Map keeps insertion order).
  const queues = new Map<string, (() => void)[]>();
  let waiting = 0;
  let scheduled = false;
  const drain = (): void => {
    scheduled = false;
    for (let n = 0; n < perTurn && waiting > 0; n++) {
      const [caller, queue] = queues.entries().next().value!;
      queues.delete(caller);
      const task = queue.shift()!;
      waiting--;
      if (queue.length > 0) queues.set(caller, queue);
      run(task, logger);
    }
    if (waiting > 0) schedule();
  };
  const schedule = (): void => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(drain);
  };
  const pace = (caller: string, task: () => void): void => {
    const queue = queues.get(caller);
    if (queue === undefined) queues.set(caller, [task]);
    else queue.push(task);
    waiting++;
    schedule();
  };
  return Object.defineProperty(pace, "waiting", { get: () => waiting }) as Pacer;
}
