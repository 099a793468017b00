/**
 * The contract every source meets, run against each implementation
 * (sim-source.test.ts, netlink-source.test.ts). `makeTask` gives a task the
 * source knows to be alive, and `makeExit` makes one exit and says who it was.
 */
import { describe, expect, it } from "vitest";
import type { ExitRecord } from "../src/kernel/exit-record.ts";
import { TaskNotFoundError, type TaskstatsSource } from "../src/sources/source.ts";
import { eventually } from "./helpers.ts";

export interface ContractHarness {
  open(): Promise<TaskstatsSource>;
  /** A live task's pid and tgid. */
  liveTask(source: TaskstatsSource): Promise<{ pid: number; tgid: number }>;
  /** Causes (or waits for) exits on watched CPUs; resolves with the pids that exited, if known. */
  causeExits(source: TaskstatsSource, cpus: number[]): Promise<number[] | undefined>;
  /** A pid that is certainly not alive. */
  deadPid(source: TaskstatsSource): Promise<number>;
}

export function sourceContract(name: string, h: ContractHarness): void {
  describe(`source contract: ${name}`, () => {
    it("reports its possible CPUs and a struct version", async () => {
      const s = await h.open();
      try {
        expect(s.possible.cpus.length).toBeGreaterThan(0);
        expect(s.possible.list).toMatch(/^\d+(-\d+)?(,\d+(-\d+)?)*$/);
        const info = s.info();
        expect(info.source).toBe(s.name);
        expect(info.taskstatsVersion).toBeGreaterThanOrEqual(1);
      } finally {
        await s.close();
      }
    });

    it("GetPid of a live task returns its own record", async () => {
      const s = await h.open();
      try {
        const { pid, tgid } = await h.liveTask(s);
        const stats = await s.getPid(pid);
        expect(stats.acPid).toBe(pid);
        if (stats.acTgid !== undefined) expect(stats.acTgid).toBe(tgid);
        expect(stats.acComm).toBeTruthy();
        expect(stats.version).toBeGreaterThan(0);
        const group = await s.getTgid(tgid);
        expect(group.version).toBeGreaterThan(0);
      } finally {
        await s.close();
      }
    });

    it("GetPid of a dead task rejects with TaskNotFoundError", async () => {
      const s = await h.open();
      try {
        const dead = await h.deadPid(s);
        await expect(s.getPid(dead)).rejects.toBeInstanceOf(TaskNotFoundError);
        await expect(s.getTgid(dead)).rejects.toBeInstanceOf(TaskNotFoundError);
      } finally {
        await s.close();
      }
    });

    it("sends exit records only for watched CPUs, numbered per CPU", async () => {
      const s = await h.open();
      const records: ExitRecord[] = [];
      s.start({ exit: (r) => records.push(r), kernelLoss: () => {}, sourceLoss: () => {} });
      try {
        const cpus = [s.possible.cpus[0]!];
        s.watch(cpus, true);
        await s.synced();
        const pids = await h.causeExits(s, cpus);
        await eventually(() => records.length > 0 && (pids === undefined || records.some((r) => pids.includes(r.pid))));
        expect(records.every((r) => cpus.includes(r.cpu))).toBe(true);
        if (pids !== undefined) expect(records.some((r) => pids.includes(r.pid))).toBe(true);
        for (let i = 1; i < records.length; i++) expect(records[i]!.cpuSeq).toBe(records[i - 1]!.cpuSeq + 1);
        for (const r of records) {
          expect(r.pidStats.acPid).toBe(r.pid);
          if (r.tgidStats !== undefined) expect(r.pidStats.acFlag! & 0x20).toBe(0x20); // AGROUP: the group died
        }
      } finally {
        await s.close();
      }
    });
  });
}
