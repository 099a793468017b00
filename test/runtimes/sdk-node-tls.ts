/**
 * The SDK's Node entry (node.ts: connect-node over node:https and node:http2), as Deno and Bun take it by the package's
 * `node` condition, with `tls: { ca }` from the file given first, calling each URL given after it over Connect,
 * gRPC-Web and gRPC: a unary call with an empty request (every field at its default: an empty body), one the server
 * refuses (its answer, not the transport's), and a stream's first message. One JSON line per call, its error's code
 * and message ("ok" if it succeeded).
 */
import { readFileSync } from "node:fs";
import { createTaskwireClient } from "../../clients/ts/src/node.ts";
import { outcome } from "./_outcome.ts";

const [caFile, ...urls] = process.argv.slice(2);
const ca = readFileSync(caFile!, "utf8");
for (const url of urls) {
  for (const protocol of ["connect", "grpc-web", "grpc"] as const) {
    const client = createTaskwireClient(url, { protocol, retry: false, tls: { ca } });
    const calls = {
      empty: () => client.getInfo({}, { timeoutMs: 5000 }),
      refused: () => client.getPid({ pid: 0 }, { timeoutMs: 5000 }),
      stream: async () => {
        for await (const _ of client.subscribeExits({ cpumask: "0" }, { timeoutMs: 5000 })) break;
      },
    };
    for (const [call, run] of Object.entries(calls)) {
      console.log(JSON.stringify({ url, protocol, call, ...await outcome(run) }));
    }
  }
}
process.exit(0);
