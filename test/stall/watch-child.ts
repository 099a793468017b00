/**
 * A watchExits consumer in a process of its own, for test/watch-stall.test.ts
 * to stop (SIGSTOP) and resume (SIGCONT). Args: URL LISTENER_ID TOTAL. Prints
 * "subscribed", a line per 10 seqs accounted for, and a last JSON line:
 * exits received, losses by reason, reconnects. WATCH_TOKEN: a bearer token;
 * WATCH_PROTOCOL: "grpc" (over HTTP/2), or "connect-h2" (Connect over HTTP/2);
 * else Connect over HTTP/1.1.
 */
import { createConnectTransport } from "@connectrpc/connect-node";
import { createTaskwireClient, LossReason, watchExits } from "../../clients/ts/src/node.ts";

const [url, listenerId, total] = process.argv.slice(2) as [string, string, string];
const token = process.env["WATCH_TOKEN"];
const protocol = process.env["WATCH_PROTOCOL"];
const client = createTaskwireClient(url, {
  ...(token && { token }),
  ...(protocol === "grpc" && { protocol }),
  ...(protocol === "connect-h2" && { transport: connectH2() }),
});

// A transport of one's own carries no token of the SDK's: this one sends it.
function connectH2() {
  const bearer = (next: (req: { header: Headers }) => unknown) => (req: { header: Headers }) => {
    if (token) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  return createConnectTransport({ baseUrl: url, httpVersion: "2", interceptors: [bearer as never] });
}
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
    onReconnect: (r) => (reconnects++, process.stdout.write(`reconnect ${r.error.code} ${r.error.rawMessage}\n`)),
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
