/**
 * The latency baseline: a bare Node HTTP/1.1 server writing one chunk per
 * event (the producer's clock in µs, padded to a record's size) on the same
 * 1 ms ticks, read by a bare node:http client in another process. What the
 * machine and runtime give without taskwire, Connect or protobuf.
 * Run as a script, it is that client: `_bare-latency.js URL` (answers "mark"
 * on stdin like _stream-counter).
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { createInterface } from "node:readline";
import { everyTick, nowUs } from "./_clock.ts";

/** Starts the bare server; each connection gets `perSecond` chunks a second until closed. */
export async function startBareServer(perSecond: number): Promise<{ url: string; close: () => Promise<void> }> {
  const streams = new Set<() => void>();
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/plain" });
    const stop = everyTick(perSecond, (n) => {
      for (let i = 0; i < n; i++) res.write(`${nowUs()}${" ".repeat(300)}\n`);
    });
    streams.add(stop);
    res.once("close", stop);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: () =>
      new Promise((r) => {
        for (const stop of streams) stop();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

if (process.argv[1]?.endsWith("_bare-latency.js")) {
  const latencies: number[] = [];
  let events = 0;
  http.get(process.argv[2]!, (res) => {
    let buf = "";
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => {
      const now = nowUs();
      buf += chunk;
      const lines = buf.split("\n");
      buf = lines.pop()!;
      for (const line of lines) {
        events++;
        latencies.push(now - Number(line.trim()));
      }
    });
    process.stdout.write("ready\n");
  });
  createInterface({ input: process.stdin }).on("line", () => {
    process.stdout.write(`${JSON.stringify({ events, cpuUs: 0, latencies: latencies.splice(0) })}\n`);
  }).on("close", () => process.exit(0));
}
