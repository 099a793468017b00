/**
 * Runs under Deno and Bun (spawned by test/runtimes.test.ts): the netlink
 * source through this runtime's FFI and worker. GET of itself, then one
 * named child's exit record on CPU 0, then how long unwatching CPU 0 takes
 * while the reader is idle (its doorbell). Prints one JSON line.
 */
import { spawnSync } from "node:child_process";
import type { ExitRecord } from "../../src/kernel/exit-record.ts";
import { openNetlinkSource } from "../../src/sources/netlink/netlink-source.ts";

const helper = process.argv[2]!;
const name = process.argv[3]!;
const source = await openNetlinkSource();
const self = await source.getPid(process.pid);
const records: ExitRecord[] = [];
source.start({ exit: (r) => records.push(r), kernelLoss: () => {}, sourceLoss: () => {} });
source.watch([0], true);
await source.synced();
const child = spawnSync("taskset", ["-c", "0", helper, "exit", name, "5"]);
const deadline = Date.now() + 5000;
let mine: ExitRecord | undefined;
while (mine === undefined && Date.now() < deadline) {
  await new Promise((r) => setTimeout(r, 20));
  mine = records.find((r) => r.pidStats.acComm === name);
}
// The doorbell through this runtime's FFI: an unwatch while the reader sleeps in poll() takes effect at once
// (without the doorbell, at the poll's timeout: 0-100 ms). The re-watch is woken by the port (no socket to poll).
const controlMs: number[] = [];
for (let round = 0; round < 5; round++) {
  await new Promise((r) => setTimeout(r, 150 + 19 * round));
  const t0 = performance.now();
  source.watch([0], false);
  await source.synced();
  controlMs.push(performance.now() - t0);
  source.watch([0], true);
  await source.synced();
}
const info = source.info();
await source.close();
console.log(JSON.stringify({
  runtime: (globalThis as { Deno?: unknown }).Deno ? "deno" : (globalThis as { Bun?: unknown }).Bun ? "bun" : "node",
  selfPid: self.acPid === process.pid,
  version: info.taskstatsVersion,
  childPid: child.pid,
  controlMs,
  exit: mine && { pid: mine.pid, cpu: mine.cpu, comm: mine.pidStats.acComm, code: mine.pidStats.acExitcode },
}));
process.exit(0);
