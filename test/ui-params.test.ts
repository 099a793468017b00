/** The dashboard's URL parameters (/ui?cpus=...&buffer=...), as the page reads them. */
import { describe, expect, it } from "vitest";
import { dashboardParams } from "../src/server/ui/_format.ts";

describe("dashboard URL parameters", () => {
  it("takes any cpulist the kernel's syntax allows, strides included, as the README says", () => {
    expect(dashboardParams("?cpus=0-3,5").cpumask).toBe("0-3,5");
    expect(dashboardParams("?cpus=0-15:2/4").cpumask).toBe("0-15:2/4");
    expect(dashboardParams("?cpus=" + encodeURIComponent("0-7:1/2,9")).cpumask).toBe("0-7:1/2,9");
  });

  it("watches every CPU, at the server's default queue size, when a parameter is absent or no cpulist", () => {
    expect(dashboardParams("")).toEqual({ cpumask: "all", buffer: 0 });
    expect(dashboardParams("?cpus=<script>&buffer=x").cpumask).toBe("all");
    expect(dashboardParams("?buffer=4096").buffer).toBe(4096);
    expect(dashboardParams("?buffer=-5").buffer).toBe(0);
  });
});
