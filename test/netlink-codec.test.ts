/** Pure netlink codec and struct decoding, on messages captured from kernel 6.18 (test/fixtures). */
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeStatsVector,
  decodeTaskStats,
  encodeTaskStats,
  LAYOUT_V15,
  LAYOUT_V16,
} from "../src/kernel/taskstats-decode.ts";
import { toTaskStats } from "../src/kernel/stats-vector.ts";
import { TASKSTATS_FIELDS } from "../src/kernel/taskstats.ts";
import {
  encodeGenlRequest,
  encodeTaskstatsGet,
  NetlinkFormatError,
  parseAttrs,
  parseErrorPayload,
  parseFamilyId,
  parseMessages,
  parseTaskstatsNew,
} from "../src/sources/netlink/codec.ts";
import * as K from "../src/sources/netlink/constants.ts";

const fx = JSON.parse(readFileSync(new URL("./fixtures/kernel-6.18-messages.json", import.meta.url), "utf8"));
const bytes = (hex: string) => new Uint8Array(Buffer.from(hex, "hex"));

// The offsets documented in DESIGN.md section 3 (struct taskstats v16 on x86_64).
const DOCUMENTED: Record<string, number> = {
  version: 0,
  ac_exitcode: 4,
  ac_flag: 8,
  ac_nice: 9,
  cpu_count: 16,
  cpu_delay_total: 24,
  blkio_count: 32,
  blkio_delay_total: 40,
  swapin_count: 48,
  swapin_delay_total: 56,
  cpu_run_real_total: 64,
  cpu_run_virtual_total: 72,
  ac_comm: 80,
  ac_sched: 112,
  ac_uid: 120,
  ac_gid: 124,
  ac_pid: 128,
  ac_ppid: 132,
  ac_btime: 136,
  ac_etime: 144,
  ac_utime: 152,
  ac_stime: 160,
  ac_minflt: 168,
  ac_majflt: 176,
  coremem: 184,
  virtmem: 192,
  hiwater_rss: 200,
  hiwater_vm: 208,
  read_char: 216,
  write_char: 224,
  read_syscalls: 232,
  write_syscalls: 240,
  read_bytes: 248,
  write_bytes: 256,
  cancelled_write_bytes: 264,
  nvcsw: 272,
  nivcsw: 280,
  ac_utimescaled: 288,
  ac_stimescaled: 296,
  cpu_scaled_run_real_total: 304,
  freepages_count: 312,
  freepages_delay_total: 320,
  thrashing_count: 328,
  thrashing_delay_total: 336,
  ac_btime64: 344,
  compact_count: 352,
  compact_delay_total: 360,
  ac_tgid: 368,
  ac_tgetime: 376,
  ac_exe_dev: 384,
  ac_exe_inode: 392,
  wpcopy_count: 400,
  wpcopy_delay_total: 408,
  irq_count: 416,
  irq_delay_total: 424,
  cpu_delay_max: 432,
  cpu_delay_min: 440,
  blkio_delay_max: 448,
  blkio_delay_min: 456,
  swapin_delay_max: 464,
  swapin_delay_min: 472,
  freepages_delay_max: 480,
  freepages_delay_min: 488,
  thrashing_delay_max: 496,
  thrashing_delay_min: 504,
  compact_delay_max: 512,
  compact_delay_min: 520,
  wpcopy_delay_max: 528,
  wpcopy_delay_min: 536,
  irq_delay_max: 544,
  irq_delay_min: 552,
};
const snake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

describe("struct taskstats layouts", () => {
  it("the table and the computed v16 layout match DESIGN.md's offsets, every field", () => {
    expect(TASKSTATS_FIELDS.map((f) => [snake(f.name), f.offset])).toEqual(Object.entries(DOCUMENTED));
    expect(LAYOUT_V16).toEqual(TASKSTATS_FIELDS);
  });

  it("version 15 puts each class's max/min after its total and is the same size", () => {
    const at = (name: string) => LAYOUT_V15.find((f) => f.name === name)!.offset;
    expect(at("cpuDelayTotal")).toBe(24);
    expect(at("cpuDelayMax")).toBe(32);
    expect(at("cpuDelayMin")).toBe(40);
    expect(at("blkioCount")).toBe(48);
    expect(at("acComm")).toBe(80 + 6 * 8); // three classes' pairs precede it
    expect(at("irqDelayTotal")).toBe(536);
    expect(at("irqDelayMin")).toBe(552);
  });

  it("decodes by length: a v13 (416-byte) struct leaves irq and max/min fields unset", () => {
    const full = decodeTaskStats(parseTaskstatsNew(parseMessages(bytes(fx.getPidReply))[0]!.payload).pid!.stats);
    const v13 = encodeTaskStats({ ...full, version: 13 }, 416);
    const d = decodeTaskStats(v13);
    expect(d.version).toBe(13);
    expect(d.wpcopyDelayTotal).toBe(full.wpcopyDelayTotal);
    expect(d.irqCount).toBeUndefined();
    expect(d.cpuDelayMax).toBeUndefined();
    expect(d.acComm).toBe(full.acComm);
    const v8 = decodeTaskStats(encodeTaskStats({ ...full, version: 8 }, 328));
    expect(v8.freepagesDelayTotal).toBe(full.freepagesDelayTotal);
    expect(v8.thrashingCount).toBeUndefined();
  });

  it("round-trips any record through both layouts", () => {
    const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
    fc.assert(
      fc.property(fc.constantFrom(15, 16), u64, u64, fc.stringMatching(/^[ -~]{0,31}$/), (version, a, b, comm) => {
        const s = {
          $typeName: "taskwire.kernel.v1.TaskStats" as const,
          version,
          cpuDelayMax: a,
          irqDelayMin: b,
          blkioCount: a,
          acComm: comm,
          acPid: 7,
        };
        const d = decodeTaskStats(encodeTaskStats(s, 560));
        expect([d.version, d.cpuDelayMax, d.irqDelayMin, d.blkioCount, d.acPid]).toEqual([version, a, b, a, 7]);
        expect(d.acComm).toBe(comm);
      }),
    );
  });

  it("refuses a struct too short for its version field", () => {
    expect(() => decodeTaskStats(new Uint8Array(1))).toThrow(RangeError);
    expect(() => decodeStatsVector(new Uint8Array(1))).toThrow(RangeError);
  });

  it("decodes into a stats vector exactly as into TaskStats, any struct of any version and length; a u64 of 2^53 or more is refused", () => {
    const structs = fc.tuple(
      fc.constantFrom(8, 13, 15, 16),
      // The kernels' sizes, and any other length: a struct cut inside a field leaves that field and the rest unset.
      fc.oneof(fc.constantFrom(328, 416, 560), fc.integer({ min: 2, max: 560 })),
      fc.uint8Array({ minLength: 560, maxLength: 560 }),
    );
    // small: every u64 below 2^53; edge: the same but one just at or past 2^53; random: as the bytes fall (most past).
    fc.assert(
      fc.property(structs, fc.constantFrom("small", "edge", "random"), fc.nat(), ([version, size, raw], mode, pick) => {
        const b = raw.slice(0, size);
        const dv = new DataView(b.buffer);
        dv.setUint16(0, version, true);
        const u64s = (version === 15 ? LAYOUT_V15 : LAYOUT_V16).filter((f) => f.type === "u64" && f.offset + 8 <= size);
        if (mode !== "random") {
          for (const f of u64s) dv.setBigUint64(f.offset, dv.getBigUint64(f.offset, true) & (2n ** 53n - 1n), true);
        }
        if (mode === "edge" && u64s.length > 0) {
          dv.setBigUint64(u64s[pick % u64s.length]!.offset, 2n ** 53n + BigInt(pick % 3), true);
        }
        const v = decodeStatsVector(b);
        const exact = u64s.every((f) => dv.getBigUint64(f.offset, true) < 2n ** 53n);
        if (exact) expect(toTaskStats(v!)).toEqual(decodeTaskStats(b));
        else expect(v).toBeUndefined();
      }),
      { numRuns: 300 },
    );
  });

  it("decodes the captured kernel records into vectors that equal the TaskStats decoding", () => {
    for (const hex of [fx.getPidReply]) {
      const stats = parseTaskstatsNew(parseMessages(bytes(hex))[0]!.payload).pid!.stats;
      expect(toTaskStats(decodeStatsVector(stats)!)).toEqual(decodeTaskStats(stats));
    }
  });
});

describe("netlink codec on real kernel 6.18 messages", () => {
  it("finds the family id in a CTRL_CMD_GETFAMILY reply", () => {
    const [m] = parseMessages(bytes(fx.getFamilyReply));
    expect(m!.type).toBe(K.GENL_ID_CTRL);
    expect(parseFamilyId(m!.payload)).toBe(fx.family);
  });

  it("decodes a GET pid reply into the requesting process's record", () => {
    const [m] = parseMessages(bytes(fx.getPidReply));
    expect(m!.type).toBe(fx.family);
    expect(m!.seq).toBe(7);
    const parsed = parseTaskstatsNew(m!.payload);
    expect(parsed.pid!.id).toBe(fx.pid);
    expect(parsed.pid!.stats.byteLength).toBe(560);
    const s = decodeTaskStats(parsed.pid!.stats);
    expect(s.version).toBe(16);
    expect(s.acPid).toBe(fx.pid);
    expect(s.acComm).toBe("node");
    expect(s.acTgid).toBe(fx.pid);
  });

  it("reads ESRCH from an NLMSG_ERROR", () => {
    const [m] = parseMessages(bytes(fx.getPidEsrch));
    expect(m!.type).toBe(K.NLMSG_ERROR);
    expect(parseErrorPayload(m!.payload)).toBe(K.ESRCH);
  });

  it("decodes a thread group's exit: one record per thread, the tgid aggregate with the last", () => {
    const recs = (fx.exits as string[]).map((h) => {
      const [m] = parseMessages(bytes(h));
      return { seq: m!.seq, ...parseTaskstatsNew(m!.payload) };
    });
    expect(recs).toHaveLength(3);
    expect(recs.map((r) => r.seq)).toEqual([recs[0]!.seq, recs[0]!.seq + 1, recs[0]!.seq + 2]); // per-CPU numbering
    const stats = recs.map((r) => decodeTaskStats(r.pid!.stats));
    expect(stats.every((s) => s.acTgid === fx.childPid && s.acComm === "tw-fixture")).toBe(true);
    expect(recs.slice(0, 2).every((r) => r.tgid === undefined)).toBe(true);
    const last = recs[2]!;
    expect(last.pid!.id).toBe(fx.childPid); // the leader goes last (it joins its threads)
    expect(last.tgid!.id).toBe(fx.childPid);
    expect(stats[2]!.acFlag! & 0x20).toBe(0x20); // AGROUP
    const agg = decodeTaskStats(last.tgid!.stats);
    // fill_tgid_exit() sums delayacct fields of every exited thread, the leader included.
    expect(agg.cpuRunRealTotal).toBe(stats.reduce((a, s) => a + s.cpuRunRealTotal!, 0n));
    expect(agg.cpuCount).toBe(stats.reduce((a, s) => a + s.cpuCount!, 0n));
    expect(agg.acPid).toBe(0);
  });
});

describe("netlink codec framing", () => {
  it("encodes a request with aligned attributes the kernel's way", () => {
    const req = encodeTaskstatsGet(31, 5, { type: K.TASKSTATS_CMD_ATTR_REGISTER_CPUMASK, string: "0-1" });
    const [m] = parseMessages(req);
    expect([m!.type, m!.seq, m!.flags]).toEqual([31, 5, K.NLM_F_REQUEST | K.NLM_F_ACK]);
    expect(req.byteLength % 4).toBe(0);
    const [a] = parseAttrs(m!.payload.subarray(K.GENL_HDRLEN), -1);
    expect(new TextDecoder().decode(a!.data)).toBe("0-1\0");
  });

  it("skips TASKSTATS_TYPE_NULL padding at any level", () => {
    const inner = encodeGenlRequest({
      family: 1,
      cmd: 2,
      version: 1,
      seq: 1,
      attrs: [{ type: K.TASKSTATS_TYPE_NULL, u32: 0 }, { type: K.TASKSTATS_TYPE_PID, u32: 42 }, {
        type: K.TASKSTATS_TYPE_STATS,
        u32: 16,
      }],
    });
    const nestBody = inner.subarray(K.NLMSG_HDRLEN + K.GENL_HDRLEN);
    const outer = new Uint8Array(K.NLMSG_HDRLEN + K.GENL_HDRLEN + 8 + 4 + nestBody.byteLength);
    const dv = new DataView(outer.buffer);
    dv.setUint32(0, outer.byteLength, true);
    dv.setUint16(4, 31, true);
    let off = K.NLMSG_HDRLEN + K.GENL_HDRLEN;
    dv.setUint16(off, 8, true);
    dv.setUint16(off + 2, K.TASKSTATS_TYPE_NULL, true);
    off += 8; // NULL at the top level
    dv.setUint16(off, 4 + nestBody.byteLength, true);
    dv.setUint16(off + 2, K.TASKSTATS_TYPE_AGGR_PID | 0x8000, true); // NLA_F_NESTED
    outer.set(nestBody, off + 4);
    const parsed = parseTaskstatsNew(parseMessages(outer)[0]!.payload);
    expect(parsed.pid!.id).toBe(42);
  });

  it("throws NetlinkFormatError, never anything else, on truncated or random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (junk) => {
        try {
          for (const m of parseMessages(junk)) parseTaskstatsNew(m.payload);
        } catch (err) {
          expect(err).toBeInstanceOf(NetlinkFormatError);
        }
      }),
      { numRuns: 3000 },
    );
    const real = bytes(fx.exits[2]);
    for (let cut = 1; cut < real.byteLength; cut += 7) {
      try {
        for (const m of parseMessages(real.subarray(0, cut))) parseTaskstatsNew(m.payload);
      } catch (err) {
        expect(err).toBeInstanceOf(NetlinkFormatError);
      }
    }
  });
});
