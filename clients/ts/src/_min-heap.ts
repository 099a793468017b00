/**
 * A binary min-heap of numbers in a plain array: the order keeper finds a
 * run's lowest held seq in O(log n), so giving up many gaps one by one does
 * not scan what is held each time (_fleet-order.ts).
 */

/** Adds `v` to the heap `h`. */
export function heapPush(h: number[], v: number): void {
  let i = h.push(v) - 1;
  while (i > 0) {
    const p = (i - 1) >> 1;
    if ((h[p] as number) <= v) break;
    h[i] = h[p] as number;
    i = p;
  }
  h[i] = v;
}

/** Takes the smallest value off the heap `h` (which must not be empty). */
export function heapPop(h: number[]): number {
  const top = h[0] as number;
  const last = h.pop() as number;
  if (h.length === 0) return top;
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= h.length) break;
    const c = l + 1 < h.length && (h[l + 1] as number) < (h[l] as number) ? l + 1 : l;
    if ((h[c] as number) >= last) break;
    h[i] = h[c] as number;
    i = c;
  }
  h[i] = last;
  return top;
}
