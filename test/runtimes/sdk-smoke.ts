/** The SDK as a client on Deno and Bun (fetch transport): GetInfo and a few exits. Prints one JSON line. */
import { createTaskwireClient, watchExits } from "../../clients/ts/src/mod.ts";

const client = createTaskwireClient(process.argv[2]!);
const info = await client.getInfo({});
const cpus: number[] = [];
for await (const ev of watchExits(client, { cpumask: "0-3" })) {
  cpus.push(ev.cpu);
  if (cpus.length === 5) break;
}
console.log(JSON.stringify({ source: info.source, cpus }));
process.exit(0);
