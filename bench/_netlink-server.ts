/**
 * The netlink bench's server process: the netlink source (taskwire's
 * defaults: per-CPU sockets, 32 MiB buffers) behind createServer, served on
 * this runtime (Node from dist/, Deno and Bun from the sources). Prints
 * {"url","pid","runtime"} as its first line; answers "info" on stdin with
 * the source's counters as JSON; exits when stdin closes.
 */
import { createInterface } from "node:readline";
import { listen, runtimeLabel } from "../src/runtime/listen.ts";
import { keepBenchHeapHeadroom } from "./_heap.ts";
import { createServer } from "../src/server/server.ts";
import { openNetlinkSource } from "../src/sources/netlink/netlink-source.ts";

// The bench opens up to 100 streams from one address (one principal without authentication).
const admission = { maxStreams: 1e9, maxStreamsPerPrincipal: 1e9, callsPerSecond: 1e9, callBurst: 1e9 };
// BENCH_BATCH_WINDOW_MS: the reader's hand-off window (default: the source's).
const window = process.env["BENCH_BATCH_WINDOW_MS"];
const source = await openNetlinkSource(window === undefined ? {} : { batchWindowMs: Number(window) });
const server = createServer({ source, admission, limits: { maxListenersPerPrincipal: 1e9 } });
const listening = await listen(server, { host: "127.0.0.1", port: 0 });
// Its heap kept as `taskwire serve` keeps its own.
await keepBenchHeapHeadroom();
process.stdout.write(`${JSON.stringify({ url: listening.url, pid: process.pid, runtime: runtimeLabel() })}\n`);
createInterface({ input: process.stdin }).on("line", (line) => {
  if (line !== "info") return;
  process.stdout.write(`${JSON.stringify({ ...source.info(), readerCpuSeconds: source.readerCpuSeconds?.() })}\n`);
}).on("close", async () => {
  await listening.close();
  process.exit(0);
});
