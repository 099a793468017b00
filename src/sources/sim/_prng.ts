/** sfc32: a small, fast, seedable PRNG so a sim run is a function of its seed. */
export interface Prng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** Exponential with the given mean. */
  exp(mean: number): number;
  pick<T>(items: readonly T[]): T;
  /** The next `n` uniform draws into `out` (the same draws `n` calls of next() give, with no number boxed). */
  fill(out: Float64Array, n: number): void;
}

export function createPrng(seed: number): Prng {
  // The state stays int32 between calls (every update ends in a 32-bit op), so it is always a small integer in the
  // closure's context; re-reading it as uint32 first (as sfc32 is often written) stored a boxed number there on
  // most calls. The bits, and so the draws, are the same: only `t` is read as unsigned.
  let a = 0x9e3779b9 | 0, b = 0x243f6a88 | 0, c = 0xb7e15162 | 0, d = seed | 0;
  const next = (): number => {
    const t = (a + b | 0) + d | 0;
    d = d + 1 | 0;
    a = b ^ (b >>> 9);
    b = c + (c << 3) | 0;
    c = (c << 21) | (c >>> 11);
    c = c + t | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 16; i++) next();
  return {
    next,
    int: (n) => Math.floor(next() * n),
    exp: (mean) => -Math.log(1 - next()) * mean,
    pick: (items) => items[Math.floor(next() * items.length)]!,
    fill: (out, n) => {
      for (let i = 0; i < n; i++) out[i] = next();
    },
  };
}
