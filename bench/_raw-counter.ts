/**
 * The netlink bench's subscriber process: N SubscribeExits streams (Connect,
 * binary protobuf, HTTP/1.1, one connection each) read with the least client
 * work, so that 100 of them fit beside the server on a small machine: each
 * response's events are counted by walking tags and lengths (exits, and the
 * counts in loss markers), nothing is decoded. Prints "ready" once every
 * stream has its opening message; answers "mark" on stdin with JSON counts.
 * Arguments: URL, streams, cpumask, and optionally each listener's `buffer`
 * (exits; left out, or 0: the request leaves it unset and the server's
 * default applies, 8,192 exits queued and retained).
 * Benchmark-only: the Connect framing here is the minimum to read a healthy stream.
 */
import http from "node:http";
import { createInterface } from "node:readline";

const [url, n, cpumask] = [new URL(process.argv[2]!), Number(process.argv[3]), process.argv[4]!];
const buffer = Number(process.argv[5] ?? 0);
if (!Number.isInteger(buffer) || buffer < 0 || buffer >= 2 ** 32) {
  throw new RangeError(`buffer must be an integer in [0, 2^32), got "${process.argv[5]}"`);
}
const FLAG_END_STREAM = 0b10;
let exits = 0, lost = 0, opened = 0, ended = 0, messages = 0, chunks = 0;

function varint(b: Uint8Array, p: number): [value: number, next: number] {
  let v = 0, mul = 1;
  for (;;) {
    const byte = b[p++]!;
    v += (byte & 0x7f) * mul;
    if (byte < 0x80) return [v, p];
    mul *= 128;
  }
}

// Walks one message's fields; calls `on` with each length-delimited field's number and bounds, skips the rest.
function fields(b: Uint8Array, start: number, end: number, on: (no: number, s: number, e: number) => void): void {
  for (let p = start; p < end;) {
    const [tag, q] = varint(b, p);
    const wire = tag & 7;
    if (wire === 0) p = varint(b, q)[1];
    else if (wire === 2) {
      const [len, r] = varint(b, q);
      on(tag >>> 3, r, r + len);
      p = r + len;
    } else if (wire === 1) p = q + 8;
    else if (wire === 5) p = q + 4;
    else throw new Error(`wire type ${wire}`);
  }
}

function lossCount(b: Uint8Array, s: number, e: number): number {
  for (let p = s; p < e;) {
    const [tag, q] = varint(b, p);
    const [v, r] = tag & 7 ? [0, q] : varint(b, q);
    if (tag === (1 << 3)) return v;
    if (tag & 7) throw new Error("unexpected wire type in Lost");
    p = r;
  }
  return 0;
}

// SubscribeExitsResponse.events (1) -> ExitEvent.exit (3) | ExitEvent.lost (4).
function onMessage(b: Uint8Array): void {
  fields(b, 0, b.length, (no, s, e) => {
    if (no !== 1) return;
    fields(b, s, e, (f, fs, fe) => {
      if (f === 3) exits++;
      else if (f === 4) lost += lossCount(b, fs, fe);
    });
  });
}

function toVarint(v: number): number[] {
  const out: number[] = [];
  for (; v >= 0x80; v = Math.floor(v / 128)) out.push((v % 128) | 0x80);
  return [...out, v];
}

function stream(): void {
  const body = new TextEncoder().encode(cpumask);
  // SubscribeExitsRequest{cpumask: 2, buffer: 3}: the request is built by hand as the rest is.
  const req = new Uint8Array([
    0x12,
    ...toVarint(body.length),
    ...body,
    ...(buffer > 0 ? [0x18, ...toVarint(buffer)] : []),
  ]);
  const env = new Uint8Array(5 + req.length);
  new DataView(env.buffer).setUint32(1, req.length);
  env.set(req, 5);
  let first = true;
  let buf: Uint8Array = new Uint8Array(0);
  const r = http.request(url.origin + "/taskwire.v1.TaskStats/SubscribeExits", {
    method: "POST",
    headers: { "content-type": "application/connect+proto", "connect-protocol-version": "1" },
  }, (res) => {
    res.on("data", (chunk: Buffer) => {
      chunks++;
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      while (buf.length >= 5) {
        const len = new DataView(buf.buffer, buf.byteOffset).getUint32(1);
        if (buf.length < 5 + len) break;
        if ((buf[0]! & FLAG_END_STREAM) !== 0) ended++;
        else if (first) {
          first = false; // the opening message (listener id): the stream is up
          if (++opened === n) process.stdout.write("ready\n");
        } else {
          messages++;
          onMessage(buf.subarray(5, 5 + len));
        }
        buf = buf.subarray(5 + len);
      }
    });
  });
  r.on("error", (err) => process.stdout.write(`failed ${err.message}\n`));
  r.end(env);
}

for (let i = 0; i < n; i++) stream();
createInterface({ input: process.stdin }).on("line", (line) => {
  if (line === "mark") process.stdout.write(`${JSON.stringify({ exits, lost, ended, messages, chunks })}\n`);
}).on("close", () => process.exit(0));
