/**
 * A client process for bench/fleet.ts: N watchFleet consumers (ordered, from
 * new messages) on one NATS connection, counting events; answers "mark" on
 * stdin as bench/_stream-counter.ts does (startCounter's protocol). Prints
 * "ready" once every consumer has its first event or a second has passed.
 */
import { createInterface } from "node:readline";
import { connect } from "@nats-io/transport-node";
import { watchFleet } from "@taskwire/client";

const [url, n] = [process.argv[2]!, Number(process.argv[3])];
const stream = process.env["BENCH_FLEET_STREAM"] ?? "TASKWIRE_EXITS";
const subjectPrefix = process.env["BENCH_FLEET_PREFIX"] ?? "taskwire";
const nc = await connect({ servers: url });
const ctl = new AbortController();
let events = 0;

async function one(): Promise<void> {
  for await (const ev of watchFleet({ connection: nc, stream, subjectPrefix, signal: ctl.signal })) {
    if (ev.seq > 0n) events++;
  }
}

for (let i = 0; i < n; i++) one().catch((err: unknown) => process.stdout.write(`failed ${String(err)}\n`));
setTimeout(() => process.stdout.write("ready\n"), 1000);
createInterface({ input: process.stdin }).on("line", (line) => {
  if (line === "mark") {
    const cpu = process.cpuUsage();
    process.stdout.write(`${JSON.stringify({ events, cpuUs: cpu.user + cpu.system, latencies: [] })}\n`);
  }
}).on("close", () => {
  ctl.abort();
  void nc.close().finally(() => process.exit(0));
});
