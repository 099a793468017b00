/**
 * The first index in 0..n-1 at which `before` is false (n when there is
 * none), for a `before` that holds for a prefix of the indexes and not after
 * it. Shared by the retention ring (the first item after a seq) and the
 * counted-seq ranges (the first range reaching a seq).
 */
export function firstNotBefore(n: number, before: (i: number) => boolean): number {
  let lo = 0, hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (before(mid)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
