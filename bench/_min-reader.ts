/**
 * A counter process with the least client work: the same "ready"/"mark"
 * protocol and latency probe as _stream-counter.ts, but it reads
 * SubscribeExits over plain node:http and only walks the wire format to each
 * event's ac_btime64 (protobuf-es's BinaryReader), with no connect-es client
 * and no SDK decoding. The latency table's fourth layer: taskwire's server
 * seen through the cheapest reader, so a row can be split into what the
 * server adds and what the client stack adds. Benchmark-only: the Connect
 * framing here is the minimum to read a healthy stream, not a client.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import http from "node:http";
import { createInterface } from "node:readline";
import {
  ExitEventSchema,
  ExitSchema,
  SubscribeExitsRequestSchema,
  SubscribeExitsResponseSchema,
} from "../src/gen/taskwire/v1/taskstats_pb.ts";
import { envelope } from "./_ceiling.ts";
import { nowUs } from "./_clock.ts";

const [url, cpumask] = [new URL(process.argv[2]!), process.argv[4]!];
const EVENTS = SubscribeExitsResponseSchema.field.events.number;
const EXIT = ExitEventSchema.field.exit.number;
const PID_STATS = ExitSchema.field.pidStats.number;
const BTIME = ExitSchema.field.pidStats.message!.field.acBtime64!.number;
const FLAG_END_STREAM = 0b10;

const latencies: number[] = [];
let events = 0;
let opened = false;

/** The value of field `no` (length-delimited) inside `bytes`, or undefined. */
function sub(bytes: Uint8Array, no: number): Uint8Array | undefined {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === no && wire === WireType.LengthDelimited) return r.bytes();
    r.skip(wire, field);
  }
  return undefined;
}

function btime(stats: Uint8Array): number | undefined {
  const r = new BinaryReader(stats);
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === BTIME) return Number(r.uint64());
    r.skip(wire, field);
  }
  return undefined;
}

// One response message: every event's stamp against the time the message was read.
function onMessage(body: Uint8Array, now: number): void {
  const r = new BinaryReader(body);
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field !== EVENTS) {
      r.skip(wire, field);
      continue;
    }
    const exit = sub(r.bytes(), EXIT);
    const stats = exit && sub(exit, PID_STATS);
    const stamp = stats && btime(stats);
    if (stamp === undefined) continue;
    events++;
    latencies.push(now - stamp);
  }
}

function split(buffered: Uint8Array, chunk: Uint8Array): Uint8Array {
  let buf = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
  const now = nowUs();
  while (buf.length >= 5) {
    const len = new DataView(buf.buffer, buf.byteOffset).getUint32(1);
    if (buf.length < 5 + len) break;
    const isMessage = (buf[0]! & FLAG_END_STREAM) === 0;
    if (isMessage && opened) onMessage(buf.subarray(5, 5 + len), now);
    if (isMessage && !opened) {
      opened = true; // the opening message (listener id): the stream is up
      process.stdout.write("ready\n");
    }
    buf = buf.subarray(5 + len);
  }
  return buf;
}

const request = envelope(toBinary(SubscribeExitsRequestSchema, create(SubscribeExitsRequestSchema, { cpumask })));
const req = http.request(url.origin + "/taskwire.v1.TaskStats/SubscribeExits", {
  method: "POST",
  headers: { "content-type": "application/connect+proto", "connect-protocol-version": "1" },
}, (res) => {
  let buf: Uint8Array = new Uint8Array(0);
  res.on("data", (chunk: Uint8Array) => (buf = split(buf, chunk)));
});
req.end(request);

createInterface({ input: process.stdin }).on("line", (line) => {
  if (line !== "mark") return;
  const cpu = process.cpuUsage();
  process.stdout.write(`${JSON.stringify({ events, cpuUs: cpu.user + cpu.system, latencies: latencies.splice(0) })}\n`);
}).on("close", () => process.exit(0));
