/**
 * Prints the next task exits on CPU 0 (or --cpus), one line each: CPU, pid,
 * command and how it ended. Stops after --count exits.
 *
 *   node watch-exits.js [--url URL] [--cpus 0] [--count 10] [--failed]
 *
 * URL defaults to $TASKWIRE_URL, else http://127.0.0.1:7878. CPU 0 exists on
 * every machine; pass e.g. --cpus 0-3 to watch more (GetInfo's possibleCpus
 * says which exist). --failed keeps only nonzero exits, filtered by the server.
 */
import { parseArgs } from "node:util";
import { createTaskwireClient, exitStatusText, LossReason, watchExits } from "@taskwire/client";

const { values } = parseArgs({
  options: {
    url: { type: "string", default: process.env["TASKWIRE_URL"] ?? "http://127.0.0.1:7878" },
    cpus: { type: "string", default: "0" },
    count: { type: "string", default: "10" },
    failed: { type: "boolean", default: false },
  },
});
const count = Number(values.count);
if (!Number.isInteger(count) || count < 1) fail(`--count must be a whole number >= 1, got ${values.count}`, 2);

// One line on stderr, not a stack trace: the SDK's errors say what went wrong and what to do.
function fail(message: string, code = 1): never {
  console.error(`watch-exits: ${message}`);
  process.exit(code);
}

const client = createTaskwireClient(values.url);
let seen = 0;
// Ask only for the fields printed, and let the server drop clean exits when --failed.
const options = { cpumask: values.cpus, fields: ["ac_comm", "ac_exitcode"], filter: { nonzeroExit: values.failed } };
try {
  for await (const ev of watchExits(client, options)) {
    if (ev.event.case === "lost") {
      const lost = ev.event.value;
      console.error(
        `lost ${lost.countUnknown ? "an unknown number of" : lost.count} exits (${LossReason[lost.reason]})`,
      );
    } else if (ev.event.case === "exit") {
      // ac_exitcode is a wait(2) status: exitStatusText says it as "exit 3" or "signal 9 (SIGKILL)".
      const { pid, pidStats } = ev.event.value;
      console.log(`cpu ${ev.cpu} pid ${pid} ${pidStats?.acComm ?? "?"} ${exitStatusText(pidStats?.acExitcode ?? 0)}`);
      if (++seen === count) break; // ends the stream and removes the listener
    }
  }
} catch (err) {
  // watchExits retries a dropped stream by itself; what reaches here is final (no server there, a refused cpumask).
  fail(`${values.url}: ${(err as Error).message}`);
}
