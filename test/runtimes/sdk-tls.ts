/**
 * The SDK over fetch (mod.ts) on Deno and Bun, calling each URL given with a unary call and a stream over Connect
 * and gRPC-Web: one JSON line per call, its error's code and message ("ok" if it succeeded).
 */
import { createTaskwireClient } from "../../clients/ts/src/mod.ts";
import { outcome } from "./_outcome.ts";

for (const url of process.argv.slice(2)) {
  for (const protocol of ["connect", "grpc-web"] as const) {
    const client = createTaskwireClient(url, { protocol, retry: false });
    const unary = await outcome(() => client.getInfo({}, { timeoutMs: 5000 }));
    const stream = await outcome(async () => {
      for await (const _ of client.subscribeExits({ cpumask: "0" }, { timeoutMs: 5000 })) break;
    });
    for (const o of [unary, stream]) console.log(JSON.stringify({ url, protocol, ...o }));
  }
}
process.exit(0);
