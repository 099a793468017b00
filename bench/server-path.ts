/**
 * `npm run bench server-path`: the latency bench's servers
 * (_latency-servers.ts) measured inside their own process, from a write's
 * earliest stamp (an event patched by the bare Connect server, a record
 * entering taskwire's listener table) to that write reaching the client's
 * socket. The latency bench's p99 is this plus everything after the socket
 * (loopback, the client's scheduling, its SDK) and the host's noise; this is
 * the part that is the server's own, without the client's variance, so that
 * a change on taskwire's path shows here in one run. The servers take turns
 * in rounds (each with a full collection first, and a warm-up that is not
 * counted, warmUpMs as the latency bench's), each read by an SDK client in a
 * process of its own
 * over the SDK's default transport (Connect over HTTP/1.1, whose writes reach
 * the socket's _write/_writev; the stream is the connection's only traffic).
 */
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import type { Socket } from "node:net";
import { quantileOf } from "./_bootstrap.ts";
import { nowUs } from "./_clock.ts";
import { collectGarbage } from "./_heap.ts";
import { warmUpMs } from "./_interleaved.ts";
import { type LatencyServerKind, startLatencyServer } from "./_latency-servers.ts";
import { type Counter, realtimeSelf, sampleRecords, sleep, startCounter, within } from "./_shared.ts";

/** How the rounds run. */
export interface ServerPathOptions {
  readonly rounds: number;
  readonly windowMs: number;
  readonly perSecond: number;
}

const KINDS: readonly [LatencyServerKind, string][] = [
  ["bare-connect", "bare server, pre-encoded Connect messages (the baseline)"],
  ["taskwire", "taskwire, the sim in its process"],
  ["prebuilt", "taskwire fed records made ahead"],
];

/** SCHED_RR priority of the bench process and its clients, as the latency bench's real-time placement. */
const REALTIME = 10;

/** The table: each server's stamp-to-socket times over all rounds, and taskwire's against the baseline's. */
export async function benchServerPath(o: ServerPathOptions): Promise<string[][]> {
  const records = sampleRecords(256);
  const realtime = process.getuid?.() === 0;
  const undo = realtime ? realtimeSelf(REALTIME) : () => {};
  const samples = new Map<LatencyServerKind, number[]>(KINDS.map(([k]) => [k, []]));
  const roundP99 = new Map<LatencyServerKind, number[]>(KINDS.map(([k]) => [k, []]));
  try {
    for (let r = 0; r < o.rounds; r++) {
      // Each round in another order, so that no server always follows the same one.
      for (let i = 0; i < KINDS.length; i++) {
        const [kind] = KINDS[(r + i) % KINDS.length]!;
        const got = await within(
          oneWindow(kind, records, o, realtime),
          3 * (o.windowMs + warmUpMs(o.perSecond)) + 10_000,
          `server-path ${kind}`,
        );
        samples.get(kind)!.push(...got);
        roundP99.get(kind)!.push(quantileOf(sorted(got), 0.99));
      }
    }
  } finally {
    undo();
  }
  return table(samples, roundP99, realtime, o);
}

// One server's window: the time from each write's earliest stamp to the write, µs.
async function oneWindow(
  kind: LatencyServerKind,
  records: ReturnType<typeof sampleRecords>,
  o: ServerPathOptions,
  realtime: boolean,
): Promise<number[]> {
  collectGarbage();
  let earliest: number | undefined;
  const server = await startLatencyServer(kind, o.perSecond, records, (us) => (earliest ??= us));
  const port = Number(new URL(server.url).port);
  const out: number[] = [];
  let measuring = false;
  const written = (): void => {
    if (measuring && earliest !== undefined) out.push(nowUs() - earliest);
    earliest = undefined;
  };
  const onSocket = (message: unknown): void => {
    const socket = (message as { socket: Socket }).socket;
    if (socket.localPort === port) timeWrites(socket, written);
  };
  subscribe("net.server.socket", onSocket);
  let client: Counter | undefined;
  try {
    client = await startCounter(server.url, 1, "read", realtime ? { realtime: REALTIME } : {});
    server.producing = true;
    await sleep(warmUpMs(o.perSecond));
    measuring = true;
    await sleep(o.windowMs);
    measuring = false;
    return out;
  } finally {
    server.producing = false;
    client?.stop();
    unsubscribe("net.server.socket", onSocket);
    await server.close();
  }
}

// Calls `written` as each write reaches the socket: Writable hands its chunks to _write or _writev, which write
// them to the socket's handle at once (a bench's look inside; every server here is node:http).
function timeWrites(socket: Socket, written: () => void): void {
  const s = socket as Socket & { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
  const write = s._write, writev = s._writev;
  s._write = function (...a) {
    written();
    return write.apply(this, a);
  };
  s._writev = function (...a) {
    written();
    return writev.apply(this, a);
  };
}

const sorted = (xs: number[]): Float64Array => Float64Array.from(xs).sort();

function table(
  samples: Map<LatencyServerKind, number[]>,
  roundP99: Map<LatencyServerKind, number[]>,
  realtime: boolean,
  o: ServerPathOptions,
): string[][] {
  const base = sorted(samples.get("bare-connect")!);
  const [b50, b99] = [quantileOf(base, 0.5), quantileOf(base, 0.99)];
  const rows = [[
    "server",
    "writes",
    "p50 us",
    "p90 us",
    "p99 us",
    "p99.9 us",
    "rounds' p99 us",
    "p50 / p99 vs the baseline (excess, us)",
  ]];
  for (const [kind, what] of KINDS) {
    const xs = sorted(samples.get(kind)!), p99s = roundP99.get(kind)!;
    const [p50, p99] = [quantileOf(xs, 0.5), quantileOf(xs, 0.99)];
    rows.push([
      what,
      String(xs.length),
      p50.toFixed(0),
      quantileOf(xs, 0.9).toFixed(0),
      p99.toFixed(0),
      quantileOf(xs, 0.999).toFixed(0),
      `${Math.min(...p99s).toFixed(0)}-${Math.max(...p99s).toFixed(0)}`,
      kind === "bare-connect"
        ? ""
        : `${(p50 / b50).toFixed(2)}x / ${(p99 / b99).toFixed(2)}x (+${(p50 - b50).toFixed(0)} / +${
          (p99 - b99).toFixed(0)
        })`,
    ]);
  }
  rows.push([
    `${o.rounds} rounds of ${o.windowMs} ms per server at ${o.perSecond}/s, 1 ms ticks; ${
      realtime ? `bench process and clients SCHED_RR ${REALTIME}` : "shared placement (SCHED_RR needs root)"
    }; pooled over the rounds`,
    "",
    "",
    "",
    "",
    "",
    "",
    "",
  ]);
  return rows;
}
