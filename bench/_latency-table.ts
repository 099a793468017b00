/**
 * The latency table's figures: a window's events summarized as a round
 * (p50, p99, max, the blocks the ratio's interval draws), rounds merged, and
 * a row's cells, the ratio to the bare Connect server judged against issue
 * 13's target among them.
 */
import { cutBlocks, mergeBlocks, quantileOf, ratioInterval } from "./_bootstrap.ts";
import type { GcTally } from "./_heap.ts";
import type { TracedWindow } from "./_sched-trace.ts";

/** The streams issue's absolute target: p99 under this many ms. */
export const TARGET_MS = 2;

/** Issue 13's target: taskwire -> SDK p99 at most this many times the bare Connect server -> SDK p99, same rounds. */
export const TARGET_RATIO = 1.2;

/** A window's latencies (µs), the host's CPU steal over it (%; undefined off Linux) and the servers' process's GCs. */
export interface Window {
  latencies: number[];
  steal: number | undefined;
  gc: GcTally;
  /** The window's sched trace and events, when traced (BENCH_SCHED_TRACE=1). */
  traced?: TracedWindow;
}

/** The `p`th percentile of `sorted` (nearest rank). */
export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/** One round's figures, ms, and the host's steal over it, %. */
export interface Round {
  events: number;
  p50: number;
  p99: number;
  max: number;
  steal: number | undefined;
  gc: GcTally;
  /** The window's events in blocks of consecutive events, BLOCK_MS's worth each (for the ratio's interval). */
  blocks: Float64Array[];
}

/**
 * The ratio's bootstrap draws blocks of this many ms of consecutive events
 * (a turn's worth while turns were 100 ms): short enough for a 2 s window to
 * give 20, long enough to keep a burst of the host's steal inside one.
 */
export const BLOCK_MS = 100;

/** A window as a round; its events also in blocks of BLOCK_MS, which the ratio's bootstrap draws. */
export function summarize({ latencies, steal, gc }: Window, windowMs: number): Round {
  const blocks = cutBlocks(latencies, Math.max(1, Math.round(windowMs / BLOCK_MS)));
  const s = latencies.sort((a, b) => a - b);
  return {
    blocks,
    events: s.length,
    p50: percentile(s, 50) / 1000,
    p99: percentile(s, 99) / 1000,
    max: (s[s.length - 1] ?? NaN) / 1000,
    steal,
    gc,
  };
}

// The median of `xs` (nearest rank, as percentile()).
const median = (xs: number[]): number => percentile([...xs].sort((a, b) => a - b), 50);
const ms = (x: number) => `${x.toFixed(2)} ms`;

// Rounds in which the host took under 1% of this machine's CPU time: what the code does when the host lets it run.
export const QUIET_STEAL = 1;

/** A row's p99 set beside the bare Connect server's in the same rounds; judged against the target unless a control. */
export interface Compared {
  readonly baseline: Round[];
  readonly control?: boolean;
}

// The ratio column. The verdict is on every event of the rounds pooled (taskwire's p99 over the bare Connect server's),
// "settled" when its 95% interval (_bootstrap.ts) lies on one side of the target; each round's own ratio beside it.
function ratioCell(rounds: Round[], compared: Compared | undefined): string {
  if (compared === undefined) return "";
  if ([...rounds, ...compared.baseline].some((r) => r.events === 0)) {
    return "n/a: a round had no events (a client failed?)";
  }
  const ratios = rounds.map((r, i) => r.p99 / compared.baseline[i]!.p99);
  const x = (v: number) => `${v.toFixed(2)}x`;
  const pooled = ratioInterval(rounds.map((r) => r.blocks), compared.baseline.map((r) => r.blocks), { q: 0.99 });
  const cell = `${x(pooled.estimate)} (${x(pooled.low)}-${x(pooled.high)}); rounds ${x(median(ratios))} ` +
    `(${x(Math.min(...ratios))}-${x(Math.max(...ratios))})`;
  if (compared.control === true) {
    return `${cell}: control, ${pooled.low <= 1 && pooled.high >= 1 ? "holds" : "misses"} 1.0`;
  }
  const met = pooled.estimate <= TARGET_RATIO;
  const settled = met ? pooled.high <= TARGET_RATIO : pooled.low > TARGET_RATIO;
  return `${cell}: ${met ? "met" : "not met"}${settled ? "" : ", not settled"}`;
}

/** A row of the table: what was measured, where, and its rounds' figures (the ratio cell when `compared`). */
export function row(
  what: string,
  perSecond: number,
  placement: string,
  rounds: Round[],
  compared?: Compared,
): string[] {
  const p99s = rounds.map((r) => r.p99);
  const under = p99s.filter((p) => p < TARGET_MS).length;
  const steals = rounds.flatMap((r) => (r.steal === undefined ? [] : [r.steal]));
  const quiet = rounds.filter((r) => r.steal !== undefined && r.steal < QUIET_STEAL).map((r) => r.p99);
  return [
    what,
    `${perSecond}/s`,
    placement,
    String(rounds.reduce((a, r) => a + r.events, 0)),
    ms(median(rounds.map((r) => r.p50))),
    ms(median(p99s)),
    ratioCell(rounds, compared),
    `${Math.min(...p99s).toFixed(2)}-${Math.max(...p99s).toFixed(2)} ms`,
    ms(Math.max(...rounds.map((r) => r.max))),
    `${under}/${rounds.length}`,
    steals.length === 0 ? "n/a" : `${Math.min(...steals).toFixed(1)}-${Math.max(...steals).toFixed(1)}%`,
    quiet.length === 0 ? "no such round" : `${ms(median(quiet))} (${quiet.length})`,
    gcCell(rounds),
  ];
}

// Per round of the window: the servers' process's minor and major collections and their pauses (medians).
function gcCell(rounds: Round[]): string {
  const m = (f: (g: GcTally) => number) => median(rounds.map((r) => f(r.gc)));
  return `${m((g) => g.minor)} / ${m((g) => g.major)} (${m((g) => g.pauseMs).toFixed(1)} ms)`;
}

/** Two servers' rounds as one: their events together, block k with block k. */
export function mergedRound(a: Round, b: Round): Round {
  const blocks = mergeBlocks(a.blocks, b.blocks);
  const all = Float64Array.from(blocks.flatMap((x) => [...x])).sort();
  return {
    events: all.length,
    p50: quantileOf(all, 0.5) / 1000,
    p99: quantileOf(all, 0.99) / 1000,
    max: (all[all.length - 1] ?? NaN) / 1000,
    steal: a.steal,
    gc: a.gc,
    blocks,
  };
}

/** The turns' first messages' events (_interleaved.ts firstMessages): their median latency, and its ratio to the baseline's (the bare servers'). */
export function firstsCell(firsts: number[], baseline: number[] | undefined): string {
  const m = median(firsts);
  const cell = `${(m / 1000).toFixed(2)} ms (${firsts.length} events)`;
  return baseline === undefined ? cell : `${cell}; ${(m / median(baseline)).toFixed(2)}x`;
}
