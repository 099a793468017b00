/**
 * Dispatch cost: the per-CPU listener table (the kernel's listener_array)
 * against a naive dispatcher that scans every listener's mask for each exit,
 * on a simulated 4,096-CPU machine, in the same run. Records are made first,
 * so only dispatch is timed.
 */
import type { ExitRecord } from "../src/kernel/exit-record.ts";
import { createListenerTable } from "../src/kernel/listener-table.ts";
import { createPrng } from "../src/sources/sim/_prng.ts";
import { createSimKernel } from "../src/sources/sim/sim-kernel.ts";
import { Listener } from "../src/core/listener.ts";

const CPUS = 4096;

interface Counter {
  n: number;
  readonly mask: Uint8Array;
  readonly cpus: number[];
}

function makeListeners(count: number, seed: number): Counter[] {
  const rng = createPrng(seed);
  return Array.from({ length: count }, () => {
    const len = 1 + rng.int(32), start = rng.int(CPUS - len); // a random cpulist range "a-b"
    const cpus = Array.from({ length: len }, (_, i) => start + i);
    const mask = new Uint8Array(CPUS);
    for (const c of cpus) mask[c] = 1;
    return { n: 0, mask, cpus };
  });
}

function time(fn: () => void, minMs = 300): number {
  let runs = 0;
  const t0 = performance.now();
  do {
    fn();
    runs++;
  } while (performance.now() - t0 < minMs);
  return (performance.now() - t0) / runs;
}

/** Rows: listeners, deliveries per exit, table and naive throughput. */
export function benchDispatch(counts: number[] = [10, 1000, 10_000]): string[][] {
  const kernel = createSimKernel({ cpus: CPUS, exitRate: 0, seed: 3, population: 20_000 });
  const records: ExitRecord[] = [];
  kernel.onRecord = (r) => records.push(r);
  kernel.watch(Array.from({ length: CPUS }, (_, i) => i), true);
  kernel.exitNow(20_000);
  const rows = [[
    "listeners",
    "deliveries / exit",
    "table: deliveries/s",
    "table: ns / exit",
    "ns / delivery",
    "naive scan: ns / exit",
    "table speedup",
    "with queues: deliveries/s",
  ]];
  for (const count of counts) {
    const ls = makeListeners(count, count);
    const table = createListenerTable<Counter>(CPUS);
    for (const l of ls) table.add(l, l.cpus);
    const viaTable = () => {
      for (const r of records) for (const l of table.on(r.cpu)) l.n++;
    };
    const naive = () => {
      for (const r of records) for (const l of ls) if (l.mask[r.cpu] === 1) l.n++;
    };
    // The same listeners as real Listeners with bounded queues, drained as a stream would.
    const real = new Map(
      ls.map((
        l,
        i,
      ) => [
        l,
        new Listener({
          id: String(i),
          capacity: 1 << 20,
          policy: "drop-newest",
          ephemeral: false,
          owner: "bench",
          now: 0,
          retain: () => undefined,
        }),
      ]),
    );
    const queued = createListenerTable<Listener>(CPUS);
    for (const [l, q] of real) queued.add(q, l.cpus);
    const viaQueues = () => {
      for (const r of records) for (const l of queued.on(r.cpu)) l.deliver(r);
      for (const l of real.values()) l.take(Infinity);
    };
    viaTable();
    naive();
    viaQueues(); // warm up
    const tMs = time(viaTable), nMs = time(naive), qMs = time(viaQueues);
    const deliveries = records.reduce((a, r) => a + table.on(r.cpu).length, 0);
    rows.push([
      String(count),
      (deliveries / records.length).toFixed(1),
      `${(deliveries / (tMs / 1000) / 1e6).toFixed(1)} M`,
      ((tMs * 1e6) / records.length).toFixed(0),
      deliveries > 0 ? ((tMs * 1e6) / deliveries).toFixed(1) : "-",
      ((nMs * 1e6) / records.length).toFixed(0),
      `${(nMs / tMs).toFixed(1)}x`,
      `${(deliveries / (qMs / 1000) / 1e6).toFixed(1)} M`,
    ]);
  }
  return rows;
}
