/**
 * What a listener holds against what it is charged, by the pattern its filter
 * matches: the server's memory accounting with the slab ledger (what events
 * leave unpaid of the shared slabs they keep alive, charged once a slab is
 * sealed) and without it, in the same run (the sim source, 80,000 exits over
 * 8 CPUs). "Held" is live memory (heap and ArrayBuffers after full
 * collections) that the run added; a ratio above 1 is memory the budget did
 * not see.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { createRegistry } from "../src/core/registry.ts";
import type { ExitRecord } from "../src/kernel/exit-record.ts";
import { retainPayload, serverMemory } from "../src/server/memory.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const MiB = 1024 ** 2;

function live(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

interface Pattern {
  readonly name: string;
  /** Exits matched in runs of `on`, then `off` not. */
  readonly on: number;
  readonly off: number;
  /** The listener takes what it matched (so holds it in retention), or never reads. */
  readonly read: boolean;
  /** A second listener reads every exit first, encoding each Exit body (and retaining only 1,024). */
  readonly reader: boolean;
}

const PATTERNS: readonly Pattern[] = [
  { name: "every exit, never read", on: 1, off: 0, read: false, reader: false },
  { name: "1 in 4, never read", on: 1, off: 3, read: false, reader: true },
  { name: "runs of 20 in 100, never read", on: 20, off: 80, read: false, reader: false },
  { name: "runs of 20 in 100, never read, beside a reader", on: 20, off: 80, read: false, reader: true },
  { name: "runs of 14 in 44, never read, beside a reader", on: 14, off: 30, read: false, reader: true },
  { name: "runs of 300 in 1,000, never read, beside a reader", on: 300, off: 700, read: false, reader: true },
  { name: "runs of 20 in 100, read, beside a reader", on: 20, off: 80, read: true, reader: true },
  { name: "runs of 14 in 44, read, beside a reader", on: 14, off: 30, read: true, reader: true },
];

async function measure(p: Pattern, ledger: boolean): Promise<{ held: number; charged: number }> {
  const source = createSimSource({ cpus: 8, exitRate: 0, seed: 7 });
  const memory = serverMemory({ memoryBudget: 4096 * MiB });
  const reg = createRegistry<ExitRecord, Uint8Array>({
    feed: source,
    retain: retainPayload,
    limits: { maxBuffer: 1 << 20 },
    memory: ledger ? memory : { ...memory, slabs: undefined },
  });
  try {
    const cpus = [0, 1, 2, 3, 4, 5, 6, 7];
    const l = reg.create(cpus, { buffer: 1 << 20, policy: "drop-newest", ephemeral: false, owner: "a" });
    let i = 0;
    l.filter = () => i++ % (p.on + p.off) < p.on;
    const reader = p.reader
      ? reg.create(cpus, { buffer: 1024, policy: "drop-newest", ephemeral: false, owner: "b" })
      : undefined;
    // What the last run left (its registry's timers, its made-ahead slab) goes first.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const before = live();
    for (let k = 0; k < 400; k++) {
      source.kernel.exitNow(200);
      reader?.take(1 << 20);
      if (p.read) l.take(1 << 20);
    }
    reader?.take(1 << 20);
    reg.settleSlabs(); // the housekeeping timer's, once a second
    return { held: live() - before, charged: l.memoryBytes + (reader?.memoryBytes ?? 0) };
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
  for (const p of PATTERNS) {
    const before = await measure(p, false);
    const after = await measure(p, true);
    rows.push([
      p.name,
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
  const rows = [["listeners", "exits retained", "ms per count (once a second)", "ns per exit retained"]];
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
      const t0 = performance.now();
      for (let k = 0; k < 20; k++) reg.settleSlabs();
      const ms = (performance.now() - t0) / 20;
      rows.push([String(n), String(held), ms.toFixed(2), ((ms * 1e6) / held).toFixed(1)]);
    } finally {
      await reg.close();
    }
  }
  return rows;
}
