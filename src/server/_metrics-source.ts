/**
 * The source's series: a counting feed between the source and the listener
 * registry (two typed-array increments per record, nothing else runs per
 * record), and per-CPU counters read from it at scrape time.
 */
import { Counter, type Registry as PromRegistry } from "prom-client";
import type { ExitFeed } from "../core/registry.ts";
import type { ExitRecord } from "../kernel/exit-record.ts";
import type { TaskstatsSource } from "../sources/source.ts";
import { counterFrom } from "./_metrics-read.ts";

/** The counting feed and its per-CPU counts. */
export interface PerCpu {
  readonly feed: ExitFeed<ExitRecord>;
  readonly received: Float64Array;
  readonly dropped: Float64Array;
  readonly discarded: Float64Array;
}

// The per-CPU counts are kept where records enter the registry, so every
// source gets them without a per-record allocation: an increment of a typed array.
export function countingFeed(source: TaskstatsSource): PerCpu {
  const nbits = source.possible.nbits;
  const received = new Float64Array(nbits), dropped = new Float64Array(nbits), discarded = new Float64Array(nbits);
  const feed: ExitFeed<ExitRecord> = {
    possible: source.possible,
    start: (sink) =>
      source.start({
        exit(record) {
          received[record.cpu]!++;
          sink.exit(record);
        },
        kernelLoss(cpu, count) {
          dropped[cpu]! += count;
          sink.kernelLoss(cpu, count);
        },
        sourceLoss(cpu, count) {
          discarded[cpu]! += count;
          sink.sourceLoss(cpu, count);
        },
      }),
    watch: (cpus, on) => source.watch(cpus, on),
    close: () => source.close(),
  };
  return { feed, received, dropped, discarded };
}

// A counter per CPU, for the CPUs that have counted anything: bounded by
// cpu_possible_mask, and by the CPUs that had exits (and listeners) in practice.
// A loss counter (`also`: the records received) has a series, at 0, for every CPU
// that produced a record: a series that first appeared at its first drops would
// hide them from rate() and increase(), which count only from a series' first sample.
function perCpuCounter(
  registry: PromRegistry,
  name: string,
  help: string,
  source: string,
  counts: Float64Array,
  also?: Float64Array,
) {
  return new Counter({
    name,
    help,
    labelNames: ["source", "cpu"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (let cpu = 0; cpu < counts.length; cpu++) {
        if (counts[cpu]! > 0 || (also !== undefined && also[cpu]! > 0)) {
          this.inc({ source, cpu: String(cpu) }, counts[cpu]!);
        }
      }
    },
  });
}

/** The source's series: records received, dropped by the kernel and discarded, per CPU; overruns; reader CPU. */
export function addSourceSeries(registry: PromRegistry, source: TaskstatsSource, perCpu: PerCpu): void {
  const name = source.name;
  perCpuCounter(
    registry,
    "taskwire_records_received_total",
    "Exit records the source delivered, by source and the CPU the task exited on.",
    name,
    perCpu.received,
  );
  perCpuCounter(
    registry,
    "taskwire_kernel_drops_total",
    "Exit records the kernel dropped before the source read them (receive buffer overflow), by source and CPU.",
    name,
    perCpu.dropped,
    perCpu.received,
  );
  perCpuCounter(
    registry,
    "taskwire_source_discards_total",
    "Exit records the source read but could not decode or pass on (a malformed kernel message, or a server bug; " +
      "each is logged), by source and CPU. Their listeners got loss markers (reason source_error).",
    name,
    perCpu.discarded,
    perCpu.received,
  );
  counterFrom(
    registry,
    "taskwire_kernel_overruns_total",
    "Times the kernel reported a full receive buffer (ENOBUFS).",
    {
      labels: { source: name },
      read: () => source.info().overruns,
    },
  );
  const readerCpu = source.readerCpuSeconds?.bind(source);
  if (readerCpu === undefined) return;
  counterFrom(
    registry,
    "taskwire_netlink_reader_cpu_seconds_total",
    "CPU time (user and system) of the netlink reader worker's thread.",
    { read: () => readerCpu() },
  );
}
