/**
 * A client process for the auth benchmark: keeps `concurrency` GetInfo calls
 * in flight against the server for `ms` and prints the calls per second it
 * completed (BENCH_TOKEN: the bearer token to send, if any).
 */
import { createTaskwireClient } from "@taskwire/client";

const [url, concurrency, ms] = [process.argv[2]!, Number(process.argv[3]), Number(process.argv[4])];
const token = process.env["BENCH_TOKEN"];
const client = createTaskwireClient(url, token ? { token } : {});
let calls = 0, failed = 0;
const until = performance.now() + ms;

async function loop(): Promise<void> {
  while (performance.now() < until) {
    try {
      await client.getInfo({});
      calls++;
    } catch {
      failed++;
    }
  }
}

await client.getInfo({}); // connect and warm up before the clock runs
const t0 = performance.now();
await Promise.all(Array.from({ length: concurrency }, loop));
process.stdout.write(`${JSON.stringify({ perSecond: calls / ((performance.now() - t0) / 1000), failed })}\n`);
process.exit(0);
