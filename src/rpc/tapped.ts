/**
 * A stream's values passed through unchanged while something watches them:
 * each value, and how the stream ended. The RPC metrics, the access log and
 * the gRPC trailer fix each wrap every stream's messages or body this way. As
 * async generators (`yield*`, `for await`) each wrapper cost a generator
 * resume and several promise hops per message on every stream; this costs
 * one `then` per message.
 */

/** How a tapped stream ended: it ran out, it failed, or its consumer stopped early (return()). */
export type TapEnd = "done" | "failed" | "stopped";

/** What watches a tapped stream. */
export interface Tap<T> {
  /** Each value as it passes. */
  readonly each?: ((value: T) => void) | undefined;
  /** Once, at the end; `error` is the failure's (undefined otherwise). */
  readonly end: (how: TapEnd, error: unknown) => void;
}

/** `source`'s values, unchanged, with `tap` told each one and the end. */
export function tapped<T>(source: AsyncIterable<T>, tap: Tap<T>): AsyncIterableIterator<T> {
  const it = source[Symbol.asyncIterator]();
  let open = true;
  const end = (how: TapEnd, error?: unknown): void => {
    if (!open) return;
    open = false;
    tap.end(how, error);
  };
  const passed = (r: IteratorResult<T>): IteratorResult<T> | Promise<never> => {
    if (r.done === true) end("done");
    else if (open) {
      try {
        tap.each?.(r.value);
      } catch (err) {
        return watcherFailed(err);
      }
    }
    return r;
  };
  // A watcher that throws fails the stream, as the source failing would: the end is told, and the source closed
  // (nothing else would close it: a consumer does not call return() after next() rejects).
  const watcherFailed = (err: unknown): Promise<never> => {
    // Closed first, so that an `end` that throws cannot leave it open; a return() that throws is caught too.
    const closing = new Promise((resolve) => resolve(it.return?.()));
    const rethrow = (): never => {
      throw err;
    };
    end("failed", err);
    return closing.then(rethrow, rethrow);
  };
  const failed = (err: unknown): never => {
    end("failed", err);
    throw err;
  };
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    next: () => it.next().then(passed, failed),
    // The consumer stopping early closes the source too, as `yield*` would.
    return: async (value?: unknown): Promise<IteratorResult<T>> => {
      try {
        return (await it.return?.(value)) ?? { done: true, value: value as T };
      } finally {
        end("stopped");
      }
    },
    // Forwarded as `yield*` does (a source without throw() is closed, and the
    // error rethrown). connect-es cancels a response body this way when its
    // client goes: a wrapper without throw() was never told, and its end
    // never reported.
    throw: (err?: unknown): Promise<IteratorResult<T>> => {
      const thrown = it.throw !== undefined ? it.throw(err) : Promise.resolve(it.return?.()).then((): never => {
        throw err;
      });
      return thrown.then(passed, failed);
    },
  };
}
