import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import { ENCODED_BODY, type ExitRecord } from "../src/kernel/exit-record.ts";
import type { TaskStats } from "../src/gen/taskwire/kernel/v1/taskstats_pb.ts";
import { AcFlag } from "../src/kernel/taskstats.ts";
import { PidTable } from "../src/sources/sim/_pid-table.ts";
import { createPrng } from "../src/sources/sim/_prng.ts";
import { createSimKernel, HANDOFF_RECORDS, type SimKernel } from "../src/sources/sim/sim-kernel.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { eventually } from "./helpers.ts";
import { sourceContract } from "./source-contract.ts";

sourceContract("sim", {
  open: async () => createSimSource({ cpus: 4, exitRate: 0, seed: 7 }),
  liveTask: async (s) => {
    const pid = (s as SimSource).kernel.livePids()[0]!;
    return { pid, tgid: (await s.getPid(pid)).acTgid! };
  },
  causeExits: async (s) => {
    (s as SimSource).kernel.exitNow(200);
    return undefined;
  },
  deadPid: async () => 4_000_000,
});

function collect(k: SimKernel): ExitRecord[] {
  const out: ExitRecord[] = [];
  k.onRecord = (r) => out.push(r);
  k.watch(Array.from({ length: k.cpus }, (_, i) => i), true);
  return out;
}

// Leaves out the wall-clock start and the encoder's memo slot (a cache, declared undefined on every record,
// which vitest's toEqual does not treat as equal across two objects when the key is a symbol).
const strip = (rs: ExitRecord[]) =>
  rs.map((r) => {
    const copy: Record<PropertyKey, unknown> = { ...r, pidStats: { ...r.pidStats, acBtime: 0, acBtime64: 0n } };
    delete copy[ENCODED_BODY];
    return copy;
  });

describe("sim kernel", () => {
  it("is deterministic for a seed", () => {
    const a = createSimKernel({ cpus: 8, exitRate: 500, seed: 42 });
    const b = createSimKernel({ cpus: 8, exitRate: 500, seed: 42 });
    const ra = collect(a), rb = collect(b);
    a.advanceTo(2e9);
    b.advanceTo(1e9);
    b.advanceTo(2e9); // the same virtual time in other steps
    expect(ra.length).toBeGreaterThan(700);
    expect(strip(rb)).toEqual(strip(ra));
    const c = createSimKernel({ cpus: 8, exitRate: 500, seed: 43 });
    const rc = collect(c);
    c.advanceTo(2e9);
    expect(strip(rc)).not.toEqual(strip(ra));
  });

  it("runs at about the requested exit rate", () => {
    const k = createSimKernel({ cpus: 4, exitRate: 1000, seed: 1 });
    const rs = collect(k);
    k.advanceTo(10e9);
    expect(rs.length).toBeGreaterThan(9000);
    expect(rs.length).toBeLessThan(11000);
  });

  it("builds records only for watched CPUs and numbers each CPU's messages", () => {
    const k = createSimKernel({ cpus: 8, exitRate: 0, seed: 3 });
    const rs: ExitRecord[] = [];
    k.onRecord = (r) => rs.push(r);
    k.watch([2, 5], true);
    k.exitNow(2000);
    expect(new Set(rs.map((r) => r.cpu))).toEqual(new Set([2, 5]));
    for (const cpu of [2, 5]) {
      expect(rs.filter((r) => r.cpu === cpu).map((r) => r.cpuSeq)).toEqual([
        ...Array(rs.filter((r) => r.cpu === cpu).length).keys(),
      ]);
    }
    expect(k.records).toBe(rs.length);
  });

  it("sends a tgid aggregate only when the last thread of an ever-multithreaded group exits", () => {
    const k = createSimKernel({ cpus: 2, exitRate: 0, seed: 11 });
    const rs = collect(k);
    k.exitNow(5000);
    const groups = new Map<number, ExitRecord[]>();
    for (const r of rs) groups.set(r.tgid, [...(groups.get(r.tgid) ?? []), r]);
    let multi = 0, single = 0;
    for (const r of rs) {
      const groupDead = (r.pidStats.acFlag! & AcFlag.AGROUP) !== 0;
      if (r.tgidStats !== undefined) {
        expect(groupDead).toBe(true);
        expect(r.pid).toBe(r.tgid); // the leader goes last
        multi++;
        // fill_tgid_exit(): the aggregate is exactly the sum of the delays of every thread that exited.
        const members = groups.get(r.tgid)!;
        expect(r.tgidStats.cpuDelayTotal).toBe(members.reduce((a, x) => a + x.pidStats.cpuDelayTotal!, 0n));
        expect(r.tgidStats.blkioCount).toBe(members.reduce((a, x) => a + x.pidStats.blkioCount!, 0n));
        expect(members.length).toBeGreaterThan(1);
        expect(r.tgidStats.acPid ?? 0).toBe(0); // the kernel fills only the summed fields
      } else if (groupDead) {
        single++;
      }
    }
    expect(multi).toBeGreaterThan(10);
    expect(single).toBeGreaterThan(10);
  });

  it("GetTgid sums the delays of live and exited threads; GetPid grows over time", () => {
    const k = createSimKernel({ cpus: 2, exitRate: 0, seed: 5, population: 400 });
    k.advanceTo(1e9);
    const pids = k.livePids();
    const tgids = new Set(pids.map((p) => k.getPid(p)!.acTgid!));
    const multi = [...tgids].find((t) => pids.filter((p) => k.getPid(p)!.acTgid === t).length > 2)!;
    expect(multi).toBeDefined();
    const threads = pids.filter((p) => k.getPid(p)!.acTgid === multi);
    const group = k.getTgid(multi)!;
    const sum = threads.reduce((a, p) => a + k.getPid(p)!.cpuDelayTotal!, 0n);
    expect(group.cpuDelayTotal).toBe(sum);
    expect(group.nvcsw).toBe(threads.reduce((a, p) => a + k.getPid(p)!.nvcsw!, 0n));
    // fill_stats_for_tgid() adds each live thread's elapsed and CPU times too; exited threads' are not kept.
    for (const f of ["acEtime", "acUtime", "acStime"] as const) {
      expect(group[f], f).toBe(threads.reduce((a, p) => a + k.getPid(p)![f]!, 0n));
    }
    expect(group.acPid, "a field the kernel does not sum is 0, not absent").toBe(0);
    const before = k.getPid(threads[0]!)!;
    k.advanceTo(5e9);
    const after = k.getPid(threads[0]!);
    if (after !== undefined) {
      expect(after.acEtime!).toBeGreaterThan(before.acEtime!);
      expect(after.cpuRunRealTotal!).toBeGreaterThanOrEqual(before.cpuRunRealTotal!);
    }
    expect(k.getTgid(threads.find((p) => p !== multi) ?? 0)).toBeUndefined(); // a non-leader tid is not a tgid
  });

  it("holds its population steady however many tasks exit (no unbounded growth)", () => {
    const k = createSimKernel({ cpus: 8, exitRate: 0, seed: 4, population: 500 });
    k.exitNow(200_000);
    expect(k.liveThreads).toBeGreaterThanOrEqual(500);
    expect(k.liveThreads).toBeLessThan(500 + 8); // one new process brings at most 7 extra threads
    expect(k.livePids().length).toBe(k.liveThreads);
  });

  it("a task keeps who it is from fork to exit, however many tasks came and went (threads and processes are reused)", () => {
    const k = createSimKernel({ cpus: 4, exitRate: 0, seed: 12 });
    const identity = (s: TaskStats) => ({
      pid: s.acPid,
      tgid: s.acTgid,
      ppid: s.acPpid,
      comm: s.acComm,
      uid: s.acUid,
      gid: s.acGid,
      nice: s.acNice,
      btime: s.acBtime64,
      inode: s.acExeInode,
      flag: (s.acFlag ?? 0) & AcFlag.AFORK,
    });
    const rs = collect(k);
    for (let round = 0; round < 20; round++) {
      const seen = new Map(k.livePids().map((pid) => [pid, identity(k.getPid(pid)!)]));
      rs.length = 0;
      k.exitNow(150); // well past the population of 64: tasks forked during the round exit in it too
      const checked = rs.filter((r) => seen.has(r.pid));
      expect(checked.length).toBeGreaterThan(10);
      for (const r of checked) expect(identity(r.pidStats)).toEqual(seen.get(r.pid));
      for (const r of rs) {
        expect(r.pidStats.acTgid).toBe(r.tgid);
        // A group leader runs its program's name; other threads are named "<program>-wN".
        expect(/-w\d+$/.test(r.pidStats.acComm ?? "")).toBe(r.pid !== r.tgid);
      }
    }
  });

  it("hands a call's records on once its exits are made, at most HANDOFF_RECORDS at a time, in order", () => {
    const k = createSimKernel({ cpus: 2, exitRate: 0, seed: 13 });
    const madeAtEach: number[] = [];
    const rs: ExitRecord[] = [];
    k.onRecord = (r) => (madeAtEach.push(k.records), rs.push(r));
    k.watch([0, 1], true);
    k.exitNow(10);
    // The netlink source's records reach the listener table already made, a batch at a time: so do these.
    expect(madeAtEach).toEqual(Array(10).fill(10));
    madeAtEach.length = 0;
    k.exitNow(HANDOFF_RECORDS + 5);
    expect(madeAtEach.slice(0, HANDOFF_RECORDS)).toEqual(Array(HANDOFF_RECORDS).fill(10 + HANDOFF_RECORDS));
    expect(madeAtEach.slice(HANDOFF_RECORDS)).toEqual(Array(5).fill(10 + HANDOFF_RECORDS + 5));
    for (const cpu of [0, 1]) {
      const seqs = rs.filter((r) => r.cpu === cpu).map((r) => r.cpuSeq);
      expect(seqs).toEqual([...seqs.keys()]);
    }
  });

  it("hands on every record past one onRecord throws for, and throws the first error after", () => {
    const k = createSimKernel({ cpus: 1, exitRate: 0, seed: 14 });
    const rs: ExitRecord[] = [];
    k.onRecord = (r) => {
      rs.push(r);
      if (rs.length === 3 || rs.length === 5) throw new Error(`sink failed at ${rs.length}`);
    };
    k.watch([0], true);
    expect(() => k.exitNow(8)).toThrow("sink failed at 3");
    expect(rs.map((r) => r.cpuSeq)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    k.exitNow(2); // nothing was left behind to hand on twice
    expect(rs.map((r) => r.cpuSeq)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it("hands on the exits a call from inside onRecord makes behind the ones before them", () => {
    const k = createSimKernel({ cpus: 1, exitRate: 0, seed: 15 });
    const rs: ExitRecord[] = [];
    k.onRecord = (r) => {
      rs.push(r);
      if (rs.length === 2) k.exitNow(3);
    };
    k.watch([0], true);
    k.exitNow(4);
    expect(rs.map((r) => r.cpuSeq)).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it("a throwing onRecord stops neither the call's exits nor its bookkeeping", () => {
    const n = 2 * HANDOFF_RECORDS + 10;
    const k = createSimKernel({ cpus: 1, exitRate: 1_000_000, seed: 16 });
    const rs: ExitRecord[] = [];
    k.onRecord = (r) => {
      rs.push(r);
      if (rs.length === 1 || rs.length === HANDOFF_RECORDS) throw new Error(`sink failed at ${rs.length}`);
    };
    k.watch([0], true);
    expect(() => k.exitNow(n)).toThrow("sink failed at 1");
    expect([k.records, rs.length]).toEqual([n, n]); // not cut short at the first hand-off
    // Virtual time did not go back: nextExit was moved past the exits exitNow() made before the throw came out.
    k.advanceTo(k.nowNs + 1e6);
    expect(rs.length).toBeGreaterThan(n);
    const times = rs.map((r) => r.receivedAtMs);
    expect(times.filter((t, i) => i > 0 && t < times[i - 1]!)).toEqual([]);
  });

  it("hands records on between exits, never from inside one (its replacement not yet forked)", () => {
    const k = createSimKernel({ cpus: 1, exitRate: 1_000_000, seed: 16, population: 64 });
    const live: number[] = [];
    k.onRecord = () => live.push(k.liveThreads);
    k.watch([0], true);
    k.exitNow(2 * HANDOFF_RECORDS + 10);
    k.advanceTo(k.nowNs + 2e6);
    expect(live.length).toBeGreaterThan(4 * HANDOFF_RECORDS);
    expect(Math.min(...live)).toBe(64);
  });

  it("a throwing onRecord changes nothing the kernel does: the same seed makes the same exits", () => {
    const [quiet, failing] = [
      createSimKernel({ cpus: 2, exitRate: 100_000, seed: 17 }),
      createSimKernel({ cpus: 2, exitRate: 100_000, seed: 17 }),
    ];
    const want = collect(quiet);
    const got: ExitRecord[] = [];
    failing.onRecord = (r) => {
      got.push(r);
      if (got.length % 100 === 0) throw new Error("sink failed");
    };
    failing.watch([0, 1], true);
    for (const ns of [5e6, 1e7, 2e7]) {
      quiet.advanceTo(ns);
      expect(() => failing.advanceTo(ns)).toThrow("sink failed");
      expect(failing.nowNs).toBe(ns);
    }
    expect(got.length).toBeGreaterThan(2 * HANDOFF_RECORDS);
    expect(strip(got)).toEqual(strip(want));
    expect(failing.livePids()).toEqual(quiet.livePids());
  });

  it("an exited task is gone", () => {
    const k = createSimKernel({ cpus: 2, exitRate: 0, seed: 9 });
    const rs = collect(k);
    k.exitNow(50);
    for (const r of rs) expect(k.getPid(r.pid)).toBeUndefined();
  });

  it("refuses bad options with RangeError", () => {
    expect(() => createSimKernel({ cpus: 0, exitRate: 1, seed: 1 })).toThrow(RangeError);
    expect(() => createSimKernel({ cpus: 2, exitRate: -1, seed: 1 })).toThrow(RangeError);
    expect(() => createSimKernel({ cpus: 2, exitRate: 1, seed: 1.5 })).toThrow(RangeError);
    // More live threads than pids could ever be handed out to (forks would look for a free pid for ever).
    expect(() => createSimKernel({ cpus: 2, exitRate: 1, seed: 1, population: 4_000_000 })).toThrow(/population/);
  });

  it("the source drives the kernel from the clock", async () => {
    const s = createSimSource({ cpus: 2, exitRate: 2000, seed: 1, tickMs: 2 });
    const rs: ExitRecord[] = [];
    const t0 = performance.now();
    s.start({ exit: (r) => rs.push(r), kernelLoss: () => {}, sourceLoss: () => {} });
    s.watch([0, 1], true);
    // Polled, not a fixed 300 ms: under load the timer may tick late, but it catches virtual time up when it does.
    await eventually(() => rs.length > 100, 10_000);
    await s.close();
    const elapsedNs = (performance.now() - t0) * 1e6;
    expect(s.kernel.nowNs).toBeGreaterThan(0);
    expect(s.kernel.nowNs).toBeLessThanOrEqual(elapsedNs); // virtual time never runs ahead of the clock
    expect(s.info().records).toBe(rs.length);
  });
});

describe("the sim source's clock", () => {
  const FAKE: Parameters<typeof vi.useFakeTimers>[0] = {
    toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "performance"],
  };
  const sinkInto = (rs: ExitRecord[]) => ({ exit: (r: ExitRecord) => rs.push(r), kernelLoss() {}, sourceLoss() {} });

  it("at rate 0 arms no timer, and reads and exitNow() still see the present", async () => {
    vi.useFakeTimers(FAKE);
    try {
      const s = createSimSource({ cpus: 2, exitRate: 0, seed: 3 });
      const rs: ExitRecord[] = [];
      s.start(sinkInto(rs));
      s.watch([0, 1], true);
      expect(vi.getTimerCount()).toBe(0);
      expect(s.kernel.nextExitNs).toBe(Infinity);
      const pid = s.kernel.livePids()[0]!;
      const etime0 = Number((await s.getPid(pid)).acEtime);
      vi.advanceTimersByTime(2000);
      expect(s.kernel.nowNs).toBeLessThan(1e9); // nothing moved it: no timer ran
      // A read catches virtual time up with the clock: the live thread is 2 s older.
      expect(Number((await s.getPid(pid)).acEtime) - etime0).toBeCloseTo(2e6, -3);
      vi.advanceTimersByTime(1000);
      s.kernel.exitNow(1);
      expect(rs.length).toBe(1);
      expect(s.kernel.nowNs).toBeGreaterThanOrEqual(3e9);
      await s.close();
    } finally {
      vi.useRealTimers();
    }
  });

  it("at a low rate wakes about once an exit, not every tick", async () => {
    vi.useFakeTimers(FAKE);
    try {
      const s = createSimSource({ cpus: 2, exitRate: 10, seed: 5 });
      const rs: ExitRecord[] = [];
      const advance = vi.spyOn(s.kernel, "advanceTo");
      s.start(sinkInto(rs));
      s.watch([0, 1], true);
      vi.advanceTimersByTime(20_000);
      await s.close();
      // ~200 exits in 20 virtual seconds; a fixed 5 ms tick would have woken 4,000 times.
      expect(rs.length).toBeGreaterThan(120);
      expect(rs.length).toBeLessThan(300);
      expect(advance.mock.calls.length).toBeLessThanOrEqual(rs.length + 1);
      expect(vi.getTimerCount()).toBe(0); // close() leaves no timer behind
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("sim pid table", () => {
  it("holds what a Map would through any sequence of adds and removes, growing as it fills", () => {
    // Pids drawn from a small range collide often, in the table's slots too; deletes exercise the backward shift.
    const op = fc.tuple(fc.constantFrom("set", "delete", "get"), fc.integer({ min: 1, max: 300 }));
    fc.assert(
      fc.property(fc.array(op, { minLength: 50, maxLength: 1500, size: "max" }), (ops) => {
        const table = new PidTable<number>();
        const model = new Map<number, number>();
        ops.forEach(([what, pid], i) => {
          if (what === "set") (table.set(pid, i), model.set(pid, i));
          else if (what === "delete") expect(table.delete(pid)).toBe(model.delete(pid));
          else expect(table.get(pid)).toBe(model.get(pid));
          expect(table.size).toBe(model.size);
        });
        for (const [pid, v] of model) expect(table.get(pid)).toBe(v);
        expect(table.keys().sort((a, b) => a - b)).toEqual([...model.keys()].sort((a, b) => a - b));
        for (let pid = 1; pid <= 300; pid++) expect(table.has(pid)).toBe(model.has(pid));
      }),
      { numRuns: 100 },
    );
  });

  it("refuses a pid that is not a positive 31-bit integer", () => {
    const table = new PidTable<string>();
    for (const pid of [0, -1, 1.5, 2 ** 31, NaN]) expect(() => table.set(pid, "x")).toThrow(RangeError);
    expect(table.size).toBe(0);
    // Pid 0 marks empty slots: it is never found, and deleting it changes nothing.
    table.set(5, "five");
    expect(table.has(0)).toBe(false);
    expect(table.delete(0)).toBe(false);
    expect([table.size, table.get(5)]).toEqual([1, "five"]);
  });
});

describe("sim prng", () => {
  // sfc32 as it is usually written, with the state read as uint32 on every call: the sim's draws must be these.
  function reference(seed: number): () => number {
    let a = 0x9e3779b9, b = 0x243f6a88, c = 0xb7e15162, d = seed >>> 0;
    const next = () => {
      a >>>= 0, b >>>= 0, c >>>= 0, d >>>= 0;
      const t = (a + b | 0) + d | 0;
      d = d + 1 | 0;
      a = b ^ (b >>> 9);
      b = c + (c << 3) | 0;
      c = (c << 21) | (c >>> 11);
      c = c + t | 0;
      return (t >>> 0) / 4294967296;
    };
    for (let i = 0; i < 16; i++) next();
    return next;
  }

  it("draws exactly sfc32's numbers for any seed", () => {
    fc.assert(
      fc.property(fc.oneof(fc.nat(), fc.integer({ min: 2 ** 31, max: 2 ** 32 - 1 }), fc.maxSafeInteger()), (seed) => {
        const rng = createPrng(seed), ref = reference(seed);
        for (let i = 0; i < 200; i++) expect(rng.next()).toBe(ref());
      }),
      { numRuns: 200 },
    );
  });
});
