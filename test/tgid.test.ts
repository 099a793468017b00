/** The thread-group sum the sim keeps as the kernel keeps signal->stats. */
import { describe, expect, it } from "vitest";
import { TASKSTATS_VERSION } from "../src/kernel/taskstats.ts";
import { addDelayacct, TGID_FIELDS, zeroTaskStats } from "../src/kernel/tgid.ts";

describe("zeroTaskStats", () => {
  it("holds exactly the group fields, all zero, plus the version", () => {
    const z = zeroTaskStats() as unknown as Record<string, unknown>;
    const { $typeName, version, ...rest } = z;
    expect($typeName).toBe("taskwire.kernel.v1.TaskStats");
    expect(version).toBe(TASKSTATS_VERSION);
    expect(Object.keys(rest).sort()).toEqual([...TGID_FIELDS].sort());
    expect(Object.values(rest).every((v) => v === 0n)).toBe(true);
  });

  it("addDelayacct sums totals, keeps the largest max and the smallest non-zero min", () => {
    const sum = zeroTaskStats();
    addDelayacct(sum, { ...zeroTaskStats(), cpuDelayTotal: 5n, cpuDelayMax: 3n, cpuDelayMin: 2n });
    addDelayacct(sum, { ...zeroTaskStats(), cpuDelayTotal: 7n, cpuDelayMax: 9n, cpuDelayMin: 0n });
    addDelayacct(sum, { ...zeroTaskStats(), cpuDelayTotal: 1n, cpuDelayMax: 1n, cpuDelayMin: 1n });
    expect(sum).toMatchObject({ cpuDelayTotal: 13n, cpuDelayMax: 9n, cpuDelayMin: 1n });
  });
});
