/**
 * A client process for the end-to-end benchmarks: opens N SubscribeExits
 * streams (or N that never read), counts events, and answers "mark" on stdin
 * with its count so the parent can time a window. Prints "ready" once every
 * stream has its opening message.
 */
import { createInterface } from "node:readline";
import { createTaskwireClient } from "@taskwire/client";
import { nowUs } from "./_clock.ts";

const [url, n, cpumask, mode] = [
  process.argv[2]!,
  Number(process.argv[3]),
  process.argv[4]!,
  process.argv[5] ?? "read",
];
// BENCH_PROTOCOL=grpc: real gRPC over h2c; otherwise the SDK's default (Connect over HTTP/1.1).
// BENCH_TOKEN: a bearer token, for a server with authentication on.
const token = process.env["BENCH_TOKEN"];
const client = createTaskwireClient(url, {
  protocol: process.env["BENCH_PROTOCOL"] === "grpc" ? "grpc" : "connect",
  ...(token && { token }),
});
const ctl = new AbortController();
let events = 0;
let opened = 0;
const latencies: number[] = [];
// BENCH_ARRIVALS=1: each event's arrival too, so that a trace can place it (latency.ts, BENCH_SCHED_TRACE).
const arrivals: number[] | undefined = process.env["BENCH_ARRIVALS"] === "1" ? [] : undefined;

async function one(): Promise<void> {
  const it = client.subscribeExits({ cpumask, buffer: Number(process.env["BENCH_BUFFER"] ?? 0) }, {
    signal: ctl.signal,
  })[Symbol.asyncIterator]();
  await it.next(); // the opening message
  if (++opened === n) process.stdout.write("ready\n");
  if (mode === "idle") return; // never read again: the transport backs up to the server
  for (let r = await it.next(); !r.done; r = await it.next()) {
    events += r.value.events.length;
    // Latency probe: the producer stamps ac_btime64 with its clock in microseconds.
    if (mode === "latency") {
      const now = nowUs();
      for (const e of r.value.events) {
        if (e.event.case !== "exit") continue;
        latencies.push(now - Number(e.event.value.pidStats!.acBtime64));
        arrivals?.push(now);
      }
    }
  }
}

let failed = false;
for (let i = 0; i < n; i++) {
  one().catch((err: unknown) => {
    // A stream refused before its opening message: say so once, so the parent fails instead of waiting for "ready".
    if (opened < n && !failed && !ctl.signal.aborted) {
      failed = true;
      process.stdout.write(`failed ${String((err as Error).message ?? err).split("\n", 1)[0]}\n`);
    }
  });
}
createInterface({ input: process.stdin }).on("line", (line) => {
  if (line === "mark") {
    const cpu = process.cpuUsage();
    process.stdout.write(
      `${
        JSON.stringify({
          events,
          cpuUs: cpu.user + cpu.system,
          latencies: latencies.splice(0),
          arrivals: arrivals?.splice(0),
        })
      }\n`,
    );
  }
}).on("close", () => {
  ctl.abort();
  process.exit(0);
});
