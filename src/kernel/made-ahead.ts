/**
 * A supply of fresh slabs (or anything costly to make) with the next one made
 * ahead, in a task of its own (the stats vectors' slabs: stats-vector.ts). A
 * slab is made when a record needs room and there is none left; made then,
 * the record waits while memory is allocated and filled, and so does
 * every record produced with it (its stream's tail). Made in a timer task
 * once the last spare was taken, the next slab is usually ready before it is
 * needed, and no record is in the middle of its path while it is made (one
 * that arrives meanwhile waits, as behind any other task). When none is
 * ready (a burst used a slab up within one task, or the timer never ran),
 * one is made on the spot, as before, and another is asked for.
 */

/** Returns a function that hands out `make()`'s results, the next one made ahead. */
export function madeAhead<T>(make: () => T): () => T {
  let spare: T | undefined;
  let pending = false;
  const refill = (): void => {
    pending = false;
    spare ??= make();
  };
  return () => {
    const got = spare ?? make();
    // None was ready: a burst, or a refill that never ran (a test's fake clock), which must not stop the supply.
    if (spare === undefined) pending = false;
    spare = undefined;
    if (!pending) {
      pending = true;
      // A timer, not a microtask: a microtask would run before the record's stream gets its turn.
      setTimeout(refill, 0);
    }
    return got;
  };
}
