/**
 * A watchExits consumer in a process of its own, for test/watch-stall.test.ts
 * to stop (SIGSTOP) and resume (SIGCONT). Args: URL LISTENER_ID TOTAL. Prints
 * "subscribed", a line per 10 seqs accounted for, and a last JSON line:
 * exits received, losses by reason, reconnects.
 */
import { createTaskwireClient, LossReason, watchExits } from "../../clients/ts/src/node.ts";

const [url, listenerId, total] = process.argv.slice(2) as [string, string, string];
const client = createTaskwireClient(url);
let exits = 0;
let reconnects = 0;
const lost: Record<string, number> = {};
let accounted = 0;
for await (
  const ev of watchExits(client, {
    listenerId,
    heartbeatMs: 100, // idle after 300 ms of silence
    backoff: { initialMs: 10, maxMs: 50 },
    onSubscribed: () => process.stdout.write("subscribed\n"),
    onReconnect: () => reconnects++,
  })
) {
  if (ev.event.case === "exit") {
    exits++;
    accounted++;
  } else if (ev.event.case === "lost") {
    const { reason, count } = ev.event.value;
    lost[LossReason[reason]] = (lost[LossReason[reason]] ?? 0) + Number(count);
    accounted += Number(count);
  }
  if (accounted % 10 === 0) process.stdout.write(`accounted ${accounted}\n`);
  if (accounted >= Number(total)) break;
}
process.stdout.write(`${JSON.stringify({ exits, lost, reconnects })}\n`);
