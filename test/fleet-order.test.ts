/** watchFleet's per-host order keeper (clients/ts/src/_fleet-order.ts), on its own: deliveries as JetStream makes them. */
import { describe, expect, it } from "vitest";
import { FleetOrder, type Ready } from "../clients/ts/src/_fleet-order.ts";

const ev = (first: number, last = first) => ({ first, last, item: `${first}-${last}` });
const items = (r: Ready<string>[] | null) => (r ?? []).map((x) => ("item" in x ? x.item : `gap ${x.gap.join("-")}`));

describe("FleetOrder", () => {
  it("passes events in order, and drops one delivered again", () => {
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100 });
    expect(items(o.push("a", ev(5)))).toEqual(["5-5"]);
    expect(items(o.push("a", ev(6, 9)))).toEqual(["6-9"]);
    expect(o.push("a", ev(6, 9))).toBeNull();
    expect(o.push("a", ev(7))).toBeNull();
    expect(items(o.push("b", ev(1)))).toEqual(["1-1"]); // another run (a restarted host) counts on its own
  });

  it("holds events after a gap until it fills (CPUs' messages of one batch, a redelivery)", () => {
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100 });
    o.push("a", ev(1), 0);
    expect(items(o.push("a", ev(3), 1))).toEqual([]);
    expect(items(o.push("a", ev(5), 2))).toEqual([]);
    expect(o.held).toBe(2);
    expect(items(o.push("a", ev(2), 3))).toEqual(["2-2", "3-3"]);
    expect(items(o.push("a", ev(4), 4))).toEqual(["4-4", "5-5"]);
    expect(o.held).toBe(0);
  });

  it("gives a gap up as lost after waitMs, or when too much is held, with its exact seqs", () => {
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 3 });
    o.push("a", ev(1), 0);
    o.push("a", ev(10), 10);
    expect(items(o.push("a", ev(11), 1011))).toEqual(["gap 2-9", "10-10", "11-11"]);
    o.push("a", ev(20), 1100);
    o.push("a", ev(22), 1100);
    o.push("a", ev(24), 1100);
    expect(items(o.push("a", ev(26), 1100))).toEqual(["gap 12-19", "20-20"]);
  });

  it("after a restart of a durable consumer, unacked older messages come once, at once", () => {
    const o = new FleetOrder<string>({ waitMs: 1000, maxHeld: 100 });
    expect(items(o.push("a", ev(100)))).toEqual(["100-100"]);
    expect(items(o.push("a", ev(98)))).toEqual(["98-98"]);
    expect(o.push("a", ev(98))).toBeNull();
    expect(items(o.push("a", ev(101)))).toEqual(["101-101"]);
  });
});
