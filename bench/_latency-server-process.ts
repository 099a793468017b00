/**
 * One latency server (_latency-servers.ts) in a process of its own, driven
 * over stdin by the latency bench's interleaved rows: `node
 * _latency-server-process.js <kind> <perSecond>` prints "url <url>", then
 * answers each line with a JSON line (bench/_child.ts startLineChild): "on"
 * and "off" (producing or not) with whether it produces, "gc" with its
 * collections since the last "gc", "collect" after a full collection. Its
 * heap is kept as `taskwire serve` keeps its own. It exits when stdin
 * closes.
 */
import { createInterface } from "node:readline";
import { collectGarbage, keepBenchHeapHeadroom, watchGc } from "./_heap.ts";
import { LATENCY_SERVER_KINDS, type LatencyServerKind, startLatencyServer } from "./_latency-servers.ts";
import { sampleRecords } from "./_shared.ts";

const kind = process.argv[2] as LatencyServerKind;
const perSecond = Number(process.argv[3]);
if (!LATENCY_SERVER_KINDS.includes(kind) || !(perSecond > 0)) {
  throw new RangeError(`usage: _latency-server-process.js <${LATENCY_SERVER_KINDS.join("|")}> <events per second>`);
}
await keepBenchHeapHeadroom();
const server = await startLatencyServer(kind, perSecond, sampleRecords(256));
let gcs = watchGc();
process.stdout.write(`url ${server.url}\n`);

const commands: Record<string, () => object> = {
  on: () => ({ producing: server.producing = true }),
  off: () => ({ producing: server.producing = false }),
  gc: () => {
    const tally = gcs();
    gcs = watchGc();
    return tally;
  },
  collect: () => (collectGarbage(), { collected: true }),
};
const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const run = commands[line];
  process.stdout.write(
    `${JSON.stringify(run === undefined ? { error: `unknown command ${JSON.stringify(line)}` } : run())}\n`,
  );
});
lines.on("close", () => void server.close().then(() => process.exit(0)));
