/** The thread-group sum the sim keeps as the kernel keeps signal->stats. */
import { describe, expect, it } from "vitest";
import { createStatsVector, SLOT, toTaskStats } from "../src/kernel/stats-vector.ts";
import { TASKSTATS_VERSION } from "../src/kernel/taskstats.ts";
import { addDelayacct, addLiveThread, TGID_FIELDS, zeroGroupStats } from "../src/kernel/tgid.ts";

function delays(total: number, max: number, min: number) {
  const v = createStatsVector();
  v.values[SLOT.cpuDelayTotal] = total;
  v.values[SLOT.cpuDelayMax] = max;
  v.values[SLOT.cpuDelayMin] = min;
  return v;
}

describe("the group sum", () => {
  it("starts zeroed in every field, as the kernel's zeroed struct (a field it has is 0, never absent), with the version", () => {
    const { $typeName, version, acComm, ...rest } = toTaskStats(zeroGroupStats());
    expect($typeName).toBe("taskwire.kernel.v1.TaskStats");
    expect(version).toBe(TASKSTATS_VERSION);
    expect(acComm).toBe("");
    expect(Object.keys(rest).length).toBeGreaterThan(TGID_FIELDS.length); // every field, not just the summed ones
    expect(Object.entries(rest).filter(([, v]) => v !== 0n && v !== 0)).toEqual([]);
  });

  it("addLiveThread adds a live thread's delays, elapsed and CPU times and switches, as fill_stats_for_tgid()", () => {
    const sum = zeroGroupStats();
    for (const [etime, utime] of [[100, 7], [50, 3]] as const) {
      const t = delays(5, 3, 2);
      t.values[SLOT.acEtime] = etime;
      t.values[SLOT.acUtime] = utime;
      t.values[SLOT.acStime] = 1;
      t.values[SLOT.nvcsw] = 4;
      t.values[SLOT.acPid] = 42; // not summed: stays 0
      addLiveThread(sum, t);
    }
    expect(toTaskStats(sum)).toMatchObject({
      cpuDelayTotal: 10n,
      acEtime: 150n,
      acUtime: 10n,
      acStime: 2n,
      nvcsw: 8n,
      acPid: 0,
    });
  });

  it("addDelayacct sums totals, keeps the largest max and the smallest non-zero min; unset counts as zero", () => {
    const sum = zeroGroupStats();
    addDelayacct(sum, delays(5, 3, 2));
    addDelayacct(sum, delays(7, 9, 0));
    addDelayacct(sum, delays(1, 1, 1));
    addDelayacct(sum, createStatsVector());
    expect(toTaskStats(sum)).toMatchObject({
      cpuDelayTotal: 13n,
      cpuDelayMax: 9n,
      cpuDelayMin: 1n,
      blkioDelayTotal: 0n,
    });
  });
});
