/**
 * "Did you mean": the known name nearest a mistyped one (a config key, a
 * variable), by edit distance, or by the words they share.
 */

/**
 * The known name nearest `name`: at the least edit distance, if close (a
 * quarter of the name at most); otherwise one that begins with it or it
 * begins with (TLS_KEYFILE: TLS_KEY; NATS_TOKEN: NATS_TOKEN_FILE), or holds
 * each of its words (TLS_CA: TLS_CLIENT_CA), the nearest in length. Words
 * are split at `separator`.
 */
export function nearest(name: string, known: readonly string[], separator: string): string | undefined {
  let best: string | undefined, bestDistance = Math.max(1, Math.floor(name.length / 4)) + 1;
  for (const k of known) {
    const d = distance(name, k);
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  if (best !== undefined || name.length < 3) return best;
  // A prefix counts when it is at least half the longer name (NATS is not NATS_PASSWORD, nor sim sim-cpus).
  const words = name.split(separator);
  const prefix = (short: string, long: string) => long.startsWith(short) && short.length * 2 >= long.length;
  const shared = (k: string) => words.filter((w) => k.split(separator).includes(w)).length;
  const related = (k: string) =>
    k.length >= 3 && (prefix(k, name) || prefix(name, k) || (words.length >= 2 && shared(k) === words.length) ||
      (shared(k) >= 2 && shared(k) === k.split(separator).length));
  const lengthOff = (k: string) => Math.abs(k.length - name.length);
  return known.filter(related).sort((a, b) => shared(b) - shared(a) || lengthOff(a) - lengthOff(b))[0];
}

// Edit distance with two neighbours swapped as one edit (prot: port); names are short (and clipped).
function distance(a: string, b: string): number {
  if (a.length > 80 || b.length > 80) return Infinity;
  let before: number[] = [], row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        next[j] = Math.min(next[j]!, before[j - 2]! + 1);
      }
    }
    [before, row] = [row, next];
  }
  return row[b.length]!;
}
