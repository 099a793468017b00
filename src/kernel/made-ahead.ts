/**
 * A supply of fresh slabs (or anything costly to make) with the next one made
 * ahead, in a task of its own. A slab is made when a record needs room and
 * there is none left; the record then waits while memory is allocated,
 * zeroed and filled, and every record produced with it waits too (its
 * stream's tail: see stats-vector.ts). Made in a timer task once the last
 * spare was taken, the next slab is usually ready before it is needed, and
 * made outside any record's path: after the task that took the last one,
 * its stream's write included. When none is ready (a burst used a slab up
 * within one task, or the timer never ran), one is made on the spot, as
 * before, and another is asked for.
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
