/**
 * The second latency baseline: a bare node:http server answering
 * SubscribeExits with pre-encoded Connect envelopes of real exit events on
 * the same 1 ms ticks, each event's ac_btime64 patched in place with the
 * clock (µs), read by the same SDK client as taskwire's rows. What the
 * Connect client stack and the machine give, without taskwire's server.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { SubscribeExitsResponseSchema } from "../src/gen/taskwire/v1/taskstats_pb.ts";
import type { ExitRecord } from "../src/kernel/exit-record.ts";
import { toExitEvent } from "../src/rpc/convert.ts";
import { envelope } from "./_ceiling.ts";
import { everyTick, nowUs, type StampProbe } from "./_clock.ts";

/** One event as a whole one-event response, and where its ac_btime64 varint starts. */
interface Template {
  bytes: Uint8Array;
  at: number;
}

// Encoded twice with two 8-byte varints that differ in their lowest bits: the first differing byte starts the field's value.
function template(record: ExitRecord): Template {
  const encode = (stamp: bigint) => {
    record.pidStats.acBtime64 = stamp;
    return toBinary(
      SubscribeExitsResponseSchema,
      create(SubscribeExitsResponseSchema, { events: [toExitEvent({ kind: "exit", seq: 1, record })] }),
    );
  };
  const a = encode(2n ** 52n + 1n), b = encode(2n ** 52n + 2n);
  let at = 0;
  while (a[at] === b[at]) at++;
  return { bytes: a, at };
}

// Clock values in µs (~2^51) take 8 varint bytes, as the sentinels did.
function writeVarint8(buf: Uint8Array, at: number, v: number): void {
  for (let i = 0; i < 7; i++) {
    buf[at + i] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[at + 7] = v;
}

/** n events in one message: one-event responses concatenated are one response with n events (repeated field). */
function message(templates: Template[], first: number, n: number, probe?: StampProbe): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const t = templates[(first + i) % templates.length]!;
    const us = nowUs();
    writeVarint8(t.bytes, t.at, us);
    probe?.(us);
    parts.push(t.bytes.slice());
  }
  const body = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    body.set(p, o);
    o += p.length;
  }
  return envelope(body);
}

/** A running bare server. */
export interface BareConnect {
  readonly url: string;
  /** Whether its streams are sent events (on ticks that come while off, nothing is sent). */
  producing: boolean;
  close(): Promise<void>;
}

/**
 * Starts the server over `records`; each stream gets `perSecond` events a
 * second (while producing) until closed. `probe`, if given, is told each
 * event's stamp.
 */
export async function startBareConnect(
  records: ExitRecord[],
  perSecond: number,
  probe?: StampProbe,
): Promise<BareConnect> {
  const templates = records.map(template);
  const opening = envelope(
    toBinary(
      SubscribeExitsResponseSchema,
      create(SubscribeExitsResponseSchema, { listenerId: "bare", cpumask: "0-7" }),
    ),
  );
  const streams = new Set<() => void>();
  const server = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { "content-type": "application/connect+proto" });
    res.write(opening);
    let k = 0;
    const stop = everyTick(perSecond, (n) => {
      if (!bare.producing) return;
      res.write(message(templates, k, n, probe));
      k += n;
    });
    streams.add(stop);
    res.once("close", stop);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const bare: BareConnect = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    producing: true,
    close: () =>
      new Promise((r) => {
        for (const stop of streams) stop();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  return bare;
}
