/** The thread-group sum the sim keeps as the kernel keeps signal->stats. */
import { describe, expect, it } from "vitest";
import { createStatsVector, SLOT, toTaskStats } from "../src/kernel/stats-vector.ts";
import { TASKSTATS_VERSION } from "../src/kernel/taskstats.ts";
import { addDelayacct, TGID_FIELDS, zeroGroupStats } from "../src/kernel/tgid.ts";

function delays(total: number, max: number, min: number) {
  const v = createStatsVector();
  v.values[SLOT.cpuDelayTotal] = total;
  v.values[SLOT.cpuDelayMax] = max;
  v.values[SLOT.cpuDelayMin] = min;
  return v;
}

describe("the group sum", () => {
  it("starts zeroed in exactly the group fields, with the version", () => {
    const { $typeName, version, ...rest } = toTaskStats(zeroGroupStats());
    expect($typeName).toBe("taskwire.kernel.v1.TaskStats");
    expect(version).toBe(TASKSTATS_VERSION);
    expect(Object.keys(rest).sort()).toEqual([...TGID_FIELDS].sort());
    expect(Object.values(rest).every((v) => v === 0n)).toBe(true);
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
