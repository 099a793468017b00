/**
 * Stats of live tasks, one line each.
 *
 *   node get-pid.js [--url URL] [--tgid] [PID...]
 *
 * URL defaults to $TASKWIRE_URL, else http://127.0.0.1:7878. Without a PID it
 * asks about itself, which a server reading this machine's kernel
 * (`taskwire serve --source netlink`) knows. --tgid sums a whole process over
 * its threads. Exits 1 if a task is not (or no longer) alive.
 */
import { parseArgs } from "node:util";
import { createTaskwireClient, TaskNotFoundError, type TaskStatsRecord } from "@taskwire/client";

const { values, positionals } = parseArgs({
  options: {
    url: { type: "string", default: process.env["TASKWIRE_URL"] ?? "http://127.0.0.1:7878" },
    tgid: { type: "boolean", default: false },
  },
  allowPositionals: true,
});
const client = createTaskwireClient(values.url);
const ids = positionals.length > 0 ? positionals.map(Number) : [process.pid];
for (const [i, id] of ids.entries()) {
  if (!Number.isInteger(id) || id < 1) fail(`not a pid: ${positionals[i]}`, 2);
}

// One line on stderr, not a stack trace: the SDK's errors say what went wrong and what to do.
function fail(message: string, code = 1): never {
  console.error(`get-pid: ${message}`);
  process.exit(code);
}

// The kernel counts CPU time in microseconds and delays in nanoseconds.
const ms = (value: bigint | undefined, perMs: number) => `${(Number(value ?? 0n) / perMs).toFixed(1)} ms`;

function line(id: number, s: TaskStatsRecord): string {
  return [
    // A group record's comm is blank: the kernel fills only its summed fields.
    `${values.tgid ? "tgid" : "pid"} ${id} ${s.acComm || "-"}`,
    `user ${ms(s.acUtime, 1e3)}`,
    `system ${ms(s.acStime, 1e3)}`,
    `cpu delay ${ms(s.cpuDelayTotal, 1e6)}`,
    `max rss ${s.hiwaterRss ?? 0n} KiB`,
    `read ${s.readBytes ?? 0n} B`,
    `written ${s.writeBytes ?? 0n} B`,
  ].join(", ");
}

for (const id of ids) {
  try {
    const { stats } = values.tgid ? await client.getTgid({ tgid: id }) : await client.getPid({ pid: id });
    if (stats !== undefined) console.log(line(id, stats));
  } catch (err) {
    // Anything else (a server that is not there, a refused token) ends the program.
    if (!(err instanceof TaskNotFoundError)) fail(`${values.url}: ${(err as Error).message}`);
    console.log(`${values.tgid ? "tgid" : "pid"} ${id}: no such live task`);
    process.exitCode = 1;
  }
}
