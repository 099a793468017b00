/**
 * What a listener holds against what it is charged, by the pattern its filter
 * matches: the server's memory accounting with the slab ledger (what events
 * leave unpaid of the shared slabs they keep alive, charged once a slab is
 * sealed) and without it, in the same run (the sim source, 8 CPUs). "Held" is live memory (heap and ArrayBuffers after full
 * collections) that the run added; a ratio above 1 is memory the budget did
 * not see.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { Listener } from "../src/core/listener.ts";
import { createRegistry, type ListenerRegistry } from "../src/core/registry.ts";
import type { ExitRecord } from "../src/kernel/exit-record.ts";
import { retainPayload, serverMemory } from "../src/server/memory.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const MiB = 1024 ** 2;

function live(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

type Registry = ListenerRegistry<ExitRecord, Uint8Array>;
type Drive = (reg: Registry, source: SimSource) => Listener<ExitRecord, Uint8Array>[];

const CPUS = [0, 1, 2, 3, 4, 5, 6, 7];
const create = (reg: Registry, owner: string, buffer = 1 << 20) =>
  reg.create(CPUS, { buffer, policy: "drop-newest", ephemeral: false, owner });

/**
 * A listener matching exits in runs of `on`, then `off` not, that takes what
 * it matched (so holds it in retention) or never reads; with `reader`, a
 * second listener reads every exit first, encoding each Exit body (and
 * retaining only 1,024).
 */
function inRuns(o: { on: number; off: number; read: boolean; reader: boolean }): Drive {
  return (reg, source) => {
    const l = create(reg, "a");
    let i = 0;
    l.filter = () => i++ % (o.on + o.off) < o.on;
    const reader = o.reader ? create(reg, "b", 1024) : undefined;
    for (let k = 0; k < 400; k++) {
      source.kernel.exitNow(200);
      reader?.take(1 << 20);
      if (o.read) l.take(1 << 20);
    }
    reader?.take(1 << 20);
    return reader === undefined ? [l] : [l, reader];
  };
}

/**
 * A listener that never reads 3,000 records, whose Exit bodies a second
 * listener (deregistered after) encodes one at a time while a third reads
 * enough other exits in between to fill a body slab: one slab per body.
 */
const scattered: Drive = (reg, source) => {
  const x = create(reg, "a", 3000), y = create(reg, "a", 3000);
  source.kernel.exitNow(3000);
  const bystander = create(reg, "b", 1024);
  for (let k = 0; k < 3000; k++) {
    source.kernel.exitNow(230);
    bystander.take(1 << 20);
    y.take(1);
  }
  reg.remove(y, "deregistered");
  bystander.take(1 << 20);
  return [x, bystander];
};

const PATTERNS: readonly [name: string, drive: Drive][] = [
  ["every exit, never read", inRuns({ on: 1, off: 0, read: false, reader: false })],
  ["1 in 4, never read", inRuns({ on: 1, off: 3, read: false, reader: true })],
  ["runs of 20 in 100, never read", inRuns({ on: 20, off: 80, read: false, reader: false })],
  ["runs of 20 in 100, never read, beside a reader", inRuns({ on: 20, off: 80, read: false, reader: true })],
  ["runs of 14 in 44, never read, beside a reader", inRuns({ on: 14, off: 30, read: false, reader: true })],
  ["runs of 300 in 1,000, never read, beside a reader", inRuns({ on: 300, off: 700, read: false, reader: true })],
  ["runs of 20 in 100, read, beside a reader", inRuns({ on: 20, off: 80, read: true, reader: true })],
  ["runs of 14 in 44, read, beside a reader", inRuns({ on: 14, off: 30, read: true, reader: true })],
  ["every exit, never read, its Exit bodies encoded one to a slab", scattered],
];

async function measure(drive: Drive, ledger: boolean): Promise<{ held: number; charged: number }> {
  const source = createSimSource({ cpus: 8, exitRate: 0, seed: 7 }) as SimSource;
  const memory = serverMemory({ memoryBudget: 4096 * MiB });
  const reg = createRegistry<ExitRecord, Uint8Array>({
    feed: source,
    retain: retainPayload,
    limits: { maxBuffer: 1 << 20 },
    memory: ledger ? memory : { ...memory, slabs: undefined },
  });
  try {
    // What the last run left (its registry's timers, its made-ahead slab) goes first.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const before = live();
    const listeners = drive(reg, source);
    reg.settleSlabs(); // the housekeeping timer's, once a second
    return { held: live() - before, charged: listeners.reduce((a, l) => a + l.memoryBytes, 0) };
  } finally {
    await reg.close();
  }
}

/** Rows: pattern, then held, charged and their ratio without and with the slab ledger. */
export async function benchAccounting(): Promise<string[][]> {
  const rows = [[
    "listener's filter",
    "held MiB",
    "charged, per event only",
    "held / charged",
    "charged, with the slab ledger",
    "held / charged",
  ]];
  for (const [name, drive] of PATTERNS) {
    const before = await measure(drive, false);
    const after = await measure(drive, true);
    rows.push([
      name,
      `${(before.held / MiB).toFixed(1)} / ${(after.held / MiB).toFixed(1)}`,
      (before.charged / MiB).toFixed(1),
      `${(before.held / before.charged).toFixed(2)}x`,
      (after.charged / MiB).toFixed(1),
      `${(after.held / after.charged).toFixed(2)}x`,
    ]);
  }
  return rows;
}

/** Rows: listeners reading every exit (retention 8,192 each), what they hold, and what a count of it takes. */
export async function benchSettle(counts: readonly number[] = [1, 10, 100]): Promise<string[][]> {
  const rows = [["listeners", "exits retained", "ms per count (once a second), median of 21", "ns per exit retained"]];
  for (const n of counts) {
    const source = createSimSource({ cpus: 8, exitRate: 0, seed: 7 });
    const reg = createRegistry<ExitRecord, Uint8Array>({
      feed: source,
      retain: retainPayload,
      memory: serverMemory({ memoryBudget: 4096 * MiB }),
    });
    try {
      const cpus = [0, 1, 2, 3, 4, 5, 6, 7];
      const ls = Array.from(
        { length: n },
        () => reg.create(cpus, { buffer: 8192, policy: "drop-newest", ephemeral: false, owner: "a" }),
      );
      for (let k = 0; k < 200; k++) {
        source.kernel.exitNow(50);
        for (const l of ls) l.take(256);
      }
      const held = n * 8192; // each retains its last 8,192 of the 10,000 exits
      reg.settleSlabs(); // warm-up: the first count compiles the code
      const times = Array.from({ length: 21 }, () => {
        const t0 = performance.now();
        reg.settleSlabs();
        return performance.now() - t0;
      }).sort((a, b) => a - b);
      const ms = times[10]!; // the median: a collection now and then lands in one count
      rows.push([String(n), String(held), ms.toFixed(2), ((ms * 1e6) / held).toFixed(1)]);
    } finally {
      await reg.close();
    }
  }
  return rows;
}
