/**
 * The bench processes' heaps, kept as `taskwire serve` keeps its own
 * (--heap-headroom-mb; Node only). BENCH_HEAP_HEADROOM_MB=0 leaves V8's own
 * sizing, for A/B runs.
 */
import { DEFAULT_HEAP_HEADROOM_BYTES, type HeapHeadroom, keepHeapHeadroom } from "../src/runtime/listen.ts";

/** Keeps this process's heap headroom; returns what was done and the MiB asked for. */
export async function keepBenchHeapHeadroom(): Promise<HeapHeadroom & { mib: number }> {
  const mib = Number(process.env["BENCH_HEAP_HEADROOM_MB"] ?? DEFAULT_HEAP_HEADROOM_BYTES / 1024 ** 2);
  return { ...(await keepHeapHeadroom(mib * 1024 ** 2)), mib };
}
