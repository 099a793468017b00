/**
 * The latency bench's servers, each producing on the same 1 ms ticks while
 * its `producing` is set: the bare Connect baseline, taskwire with the sim in
 * its process, and taskwire fed records made ahead of time. Started in the
 * bench's process (latency.ts's rows) or one per process
 * (_latency-server-process.ts, for the interleaved rows).
 */
import { copyStatsVector, SLOT } from "../src/kernel/stats-vector.ts";
import { vectorRecord } from "../src/kernel/vector-record.ts";
import type { ExitRecord } from "../src/kernel/exit-record.ts";
import { listenNode } from "../src/runtime/node.ts";
import { createServer } from "../src/server/server.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { startBareConnect } from "./_bare-connect.ts";
import { everyTick, nowUs, type StampProbe } from "./_clock.ts";
import { OBSERVABILITY } from "./_shared.ts";

/** Which server: the bare Connect baseline, taskwire (sim in its process), or taskwire fed records made ahead. */
export type LatencyServerKind = "bare-connect" | "taskwire" | "prebuilt";

/** The kinds, for parsing. */
export const LATENCY_SERVER_KINDS: readonly LatencyServerKind[] = ["bare-connect", "taskwire", "prebuilt"];

/** A running server; it starts with `producing` off. */
export interface LatencyServer {
  readonly url: string;
  /** Whether events are produced on its ticks (ticks that come while off produce nothing). */
  producing: boolean;
  close(): Promise<void>;
}

/**
 * Starts a server of `kind` at `perSecond` (the records are the bare server's
 * and the prebuilt one's); `probe`, if given, is told each stamp.
 */
export async function startLatencyServer(
  kind: LatencyServerKind,
  perSecond: number,
  records: ExitRecord[],
  probe?: StampProbe,
): Promise<LatencyServer> {
  if (kind === "bare-connect") {
    const bare = await startBareConnect(records, perSecond, probe);
    bare.producing = false;
    return bare;
  }
  const source = createSimSource({ cpus: 8, exitRate: 0, seed: 9 }) as SimSource;
  const listening = await listenNode(createServer({ source, ...OBSERVABILITY }), { port: 0 });
  const produce = kind === "taskwire" ? simProducer(source, probe) : prebuiltProducer(source, records, probe);
  const server: LatencyServer = {
    url: listening.url,
    producing: false,
    close: async () => {
      stop();
      await listening.close();
    },
  };
  const stop = everyTick(perSecond, (n) => server.producing && produce(n));
  return server;
}

// The sim makes each record in the server's process, stamped with the producer's clock (µs) in ac_btime64 as it
// enters the listener table (in its stats vector: the sim's records are encoded from that).
function simProducer(source: SimSource, probe: StampProbe | undefined): (n: number) => void {
  const deliver = source.kernel.onRecord!;
  source.kernel.onRecord = (r) => {
    stamp(r, probe);
    deliver(r);
  };
  return (n) => source.kernel.exitNow(n);
}

// Copies of records made ahead, stamped as they enter: the work of making each record, which the kernel does in
// production, is not in the server's process. A tick's copies are all made before the first enters, as the sim's
// exits are (sim-kernel.ts HANDOFF_RECORDS) and the netlink source's records come: no record waits while the next
// ones are copied.
function prebuiltProducer(
  source: SimSource,
  records: ExitRecord[],
  probe: StampProbe | undefined,
): (n: number) => void {
  let k = 0;
  return (n) => {
    const deliver = source.kernel.onRecord!; // the listener table's, once a stream's listener watches its CPUs
    const made: ExitRecord[] = [];
    for (let i = 0; i < n; i++) made.push(copied(records[k++ % records.length]!));
    for (const r of made) {
      stamp(r, probe);
      deliver(r);
    }
  };
}

// The clock now (µs) in the record's ac_btime64 (its stats vector's, where it has one: records are encoded from that).
function stamp(r: ExitRecord, probe: StampProbe | undefined): void {
  const us = nowUs();
  if (r.pidVector !== undefined) r.pidVector.values[SLOT.acBtime64] = us;
  else r.pidStats.acBtime64 = BigInt(us);
  probe?.(us);
}

function copied(r: ExitRecord): ExitRecord {
  const pidVector = copyStatsVector(r.pidVector!);
  const tgidVector = r.tgidVector === undefined ? undefined : copyStatsVector(r.tgidVector);
  return vectorRecord({ ...r, receivedAtMs: Date.now(), pidVector, tgidVector });
}
