/**
 * The netlink reader's allocation-free hot path: readTaskstatsNewAt against
 * parseTaskstatsNew, decodeStatsVectorAt (and its ac_comm cache) against the
 * plain decoders, and RecvBatch's recvmmsg framing against a real
 * NETLINK_GENERIC socket through this runtime's FFI.
 */
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeStatsVector, decodeStatsVectorAt, encodeTaskStats, LAYOUT_V16 } from "../src/kernel/taskstats-decode.ts";
import { toTaskStats } from "../src/kernel/stats-vector.ts";
import { TASKSTATS_SIZE } from "../src/kernel/taskstats.ts";
import { FRAME_HEADER } from "../src/sources/netlink/_reader-protocol.ts";
import { RecvBatch, slabOf, STRIDE } from "../src/sources/netlink/_recv-batch.ts";
import {
  createTaskstatsNewAt,
  encodeGetFamily,
  NetlinkFormatError,
  parseFamilyId,
  parseMessages,
  parseTaskstatsNew,
  readTaskstatsNewAt,
  type TaskstatsNew,
} from "../src/sources/netlink/codec.ts";
import * as K from "../src/sources/netlink/constants.ts";
import { openGenlSocket, resolveFamily } from "../src/sources/netlink/genl-socket.ts";
import { loadSyscalls } from "../src/sys/load.ts";
import { netlinkMissing } from "./native.ts";

const fx = JSON.parse(readFileSync(new URL("./fixtures/kernel-6.18-messages.json", import.meta.url), "utf8"));
const bytes = (hex: string) => new Uint8Array(Buffer.from(hex, "hex"));

type Outcome = { error: string } | { pid?: [number, number[]]; tgid?: [number, number[]] };

function viaParse(payload: Uint8Array): Outcome {
  let t: TaskstatsNew;
  try {
    t = parseTaskstatsNew(payload);
  } catch (err) {
    return { error: (err as Error).name };
  }
  return {
    ...(t.pid && { pid: [t.pid.id, [...t.pid.stats]] as [number, number[]] }),
    ...(t.tgid && { tgid: [t.tgid.id, [...t.tgid.stats]] as [number, number[]] }),
  };
}

// The same payload placed at an odd offset of a larger buffer, walked in place.
function viaWalk(payload: Uint8Array, pad: number): Outcome {
  const buf = new Uint8Array(pad + payload.byteLength + 3);
  buf.set(payload, pad);
  const dv = new DataView(buf.buffer), at = createTaskstatsNewAt();
  try {
    readTaskstatsNewAt(dv, pad, pad + payload.byteLength, at);
  } catch (err) {
    return { error: (err as Error).name };
  }
  const part = (off: number, len: number) => [...buf.subarray(off, off + len)];
  return {
    ...(at.pidStats >= 0 && { pid: [at.pid, part(at.pidStats, at.pidStatsLength)] as [number, number[]] }),
    ...(at.tgidStats >= 0 && { tgid: [at.tgid, part(at.tgidStats, at.tgidStatsLength)] as [number, number[]] }),
  };
}

describe("readTaskstatsNewAt", () => {
  it("finds what parseTaskstatsNew finds in captured kernel exits, whole, truncated and mutated", () => {
    const payloads = [fx.getPidReply, ...fx.exits].map((hex: string) => parseMessages(bytes(hex))[0]!.payload);
    for (const p of payloads) expect(viaWalk(p, 5)).toEqual(viaParse(p));
    expect(viaParse(payloads[1]!)).toHaveProperty("pid");
    fc.assert(
      fc.property(fc.constantFrom(...payloads), fc.nat(), fc.nat(255), fc.nat(7), (p, at, byte, pad) => {
        const cut = p.slice(0, at % (p.byteLength + 1));
        expect(viaWalk(cut, pad)).toEqual(viaParse(cut));
        const mutated = p.slice();
        mutated[at % p.byteLength] = byte;
        expect(viaWalk(mutated, pad)).toEqual(viaParse(mutated));
      }),
      { numRuns: 2000 },
    );
  });

  it("throws only NetlinkFormatError on random bytes, as parseTaskstatsNew does", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(7), (junk, pad) => {
        const walked = viaWalk(junk, pad);
        expect(walked).toEqual(viaParse(junk));
        if ("error" in walked) expect(walked.error).toBe(new NetlinkFormatError("").name);
      }),
      { numRuns: 3000 },
    );
  });
});

describe("decodeStatsVectorAt", () => {
  it("decodes a struct in place at any offset as decodeStatsVector decodes its copy", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: TASKSTATS_SIZE, maxLength: TASKSTATS_SIZE }), fc.nat(64), (raw, pad) => {
        for (let i = 0; i < raw.length; i += 8) raw[i + 6] = raw[i + 7] = 0; // u64s below 2^53 mostly
        new DataView(raw.buffer).setUint16(0, 16, true);
        const buf = new Uint8Array(pad + raw.length);
        buf.set(raw, pad);
        const v = decodeStatsVectorAt(new DataView(buf.buffer), buf, pad, raw.length);
        const w = decodeStatsVector(raw);
        expect(v === undefined ? undefined : toTaskStats(v)).toEqual(w === undefined ? undefined : toTaskStats(w));
      }),
      { numRuns: 300 },
    );
  });

  it("decodes ac_comm as UTF-8 whatever came before it (the cache never returns another command's name)", () => {
    const utf8 = new TextDecoder();
    const at = LAYOUT_V16.find((f) => f.name === "acComm")!.offset;
    const comms = fc.array(fc.oneof(fc.string({ maxLength: 15 }), fc.constantFrom("a", "b", "tw-helper", "é", "ab")), {
      minLength: 1,
      maxLength: 30,
    });
    fc.assert(
      fc.property(comms, (names) => {
        for (const name of names) {
          const struct = encodeTaskStats({ $typeName: "taskwire.kernel.v1.TaskStats", version: 16, acComm: name }, 560);
          const end = struct.indexOf(0, at);
          const expected = utf8.decode(struct.subarray(at, end < 0 ? at + 32 : Math.min(end, at + 32)));
          expect(decodeStatsVector(struct)!.comm).toBe(expected);
        }
      }),
      { numRuns: 300 },
    );
  });
});

const missing = await netlinkMissing();

describe.skipIf(missing !== undefined)(
  missing === undefined ? "RecvBatch on a real socket" : `RecvBatch on a real socket SKIPPED: ${missing}`,
  () => {
    it("reads queued datagrams in one recvmmsg and packs them as frames, then reports EAGAIN", async () => {
      const sys = await loadSyscalls();
      const sock = openGenlSocket(sys);
      try {
        const family = resolveFamily(sock, "nlctrl", 1);
        expect(family).toBe(K.GENL_ID_CTRL);
        // Five requests, each answered by a reply and an ACK: ten datagrams queued.
        for (let s = 10; s < 15; s++) sys.send(sock.fd, encodeGetFamily(K.TASKSTATS_GENL_NAME, s), 0);
        const slab = slabOf(sys, new ArrayBuffer(3 * STRIDE + 100));
        const batch = new RecvBatch(sys, 8);
        let used = 0;
        for (let tries = 0; used === 0 && tries < 50; tries++) {
          const n = batch.read(sock.fd, 7, 1234.5, slab, 0);
          if (n > 0) used = n;
          else await new Promise((r) => setTimeout(r, 10));
        }
        // Room for three strides: three datagrams this call, packed.
        expect(batch.asked).toBe(3);
        expect(batch.received).toBe(3);
        const frames: { cpu: number; at: number; messages: ReturnType<typeof parseMessages> }[] = [];
        for (let off = 0; off < used;) {
          const len = slab.dv.getUint32(off + 4, true);
          frames.push({
            cpu: slab.dv.getUint32(off, true),
            at: slab.dv.getFloat64(off + 8, true),
            messages: parseMessages(slab.bytes.slice(off + FRAME_HEADER, off + FRAME_HEADER + len)),
          });
          off += FRAME_HEADER + ((len + 7) & ~7);
        }
        expect(frames.map((f) => [f.cpu, f.at])).toEqual([[7, 1234.5], [7, 1234.5], [7, 1234.5]]);
        const replies = frames.flatMap((f) => f.messages).filter((m) => m.type === K.GENL_ID_CTRL);
        expect(replies.length).toBeGreaterThanOrEqual(1);
        for (const r of replies) expect(parseFamilyId(r.payload)).toBeGreaterThan(K.GENL_ID_CTRL);
        // The rest, then an empty queue: -EAGAIN, nothing written.
        let rest = 0;
        for (let n = batch.read(sock.fd, 7, 0, slab, 0); n > 0; n = batch.read(sock.fd, 7, 0, slab, 0)) {
          rest += batch.received;
        }
        expect(3 + rest).toBe(10);
        expect(batch.read(sock.fd, 7, 0, slab, 0)).toBe(-K.EAGAIN);
      } finally {
        sock.close();
      }
    });

    it("refuses a vlen outside 1-1024", async () => {
      const sys = await loadSyscalls();
      expect(() => new RecvBatch(sys, 0)).toThrow(RangeError);
      expect(() => new RecvBatch(sys, 1025)).toThrow(RangeError);
    });
  },
);
