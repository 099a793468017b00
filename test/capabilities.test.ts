/** src/sys/capabilities.ts: CapEff parsing and naming, and the start-up warning's wording. */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  CAPABILITY_NAMES,
  capabilityNames,
  describeCapabilities,
  excessCapabilities,
  parseEffectiveCapabilities,
  readCapabilities,
} from "../src/sys/capabilities.ts";

// A /proc/self/status as Linux 6.x writes it (fields around the capability lines trimmed).
const status = (capEff: string) =>
  `Name:\tnode\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t65534\t65534\t65534\t65534\n` +
  `CapInh:\t0000000000001000\nCapPrm:\t0000000000001000\nCapEff:\t${capEff}\n` +
  `CapBnd:\t0000000000001000\nCapAmb:\t0000000000001000\nNoNewPrivs:\t0\n`;

describe("capability names", () => {
  it("the table is include/uapi/linux/capability.h's, bit by bit, through CAP_CHECKPOINT_RESTORE (40)", () => {
    expect(CAPABILITY_NAMES).toHaveLength(41);
    expect(CAPABILITY_NAMES.indexOf("CAP_CHOWN")).toBe(0);
    expect(CAPABILITY_NAMES.indexOf("CAP_NET_BIND_SERVICE")).toBe(10);
    expect(CAPABILITY_NAMES.indexOf("CAP_NET_ADMIN")).toBe(12);
    expect(CAPABILITY_NAMES.indexOf("CAP_SYS_ADMIN")).toBe(21);
    expect(CAPABILITY_NAMES.indexOf("CAP_SYS_RESOURCE")).toBe(24);
    expect(CAPABILITY_NAMES.indexOf("CAP_AUDIT_READ")).toBe(37);
    expect(CAPABILITY_NAMES.indexOf("CAP_PERFMON")).toBe(38);
    expect(CAPABILITY_NAMES.indexOf("CAP_BPF")).toBe(39);
    expect(new Set(CAPABILITY_NAMES).size).toBe(41);
    expect(CAPABILITY_NAMES.every((n) => /^CAP_[A-Z_]+$/.test(n))).toBe(true);
  });

  it("agrees with setpriv --list-caps (util-linux) where it is installed", async () => {
    const { execFileSync } = await import("node:child_process");
    let listed: string[];
    try {
      listed = execFileSync("setpriv", ["--list-caps"], { encoding: "utf8" }).trim().split("\n");
    } catch {
      return; // no setpriv here: the table above is the check
    }
    // setpriv lists the running kernel's capabilities (to cap_last_cap) in bit order, lower case without the prefix.
    const n = Math.min(listed.length, CAPABILITY_NAMES.length);
    expect(listed.slice(0, n)).toEqual(CAPABILITY_NAMES.slice(0, n).map((c) => c.slice(4).toLowerCase()));
  });

  it("names the bits of a mask, lowest first; bits past the table by number, as libcap does", () => {
    expect(capabilityNames(0n)).toEqual([]);
    expect(capabilityNames(1n << 12n)).toEqual(["CAP_NET_ADMIN"]);
    expect(capabilityNames((1n << 21n) | (1n << 12n) | 1n)).toEqual(["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"]);
    expect(capabilityNames((1n << 41n) - 1n)).toEqual(CAPABILITY_NAMES);
    expect(capabilityNames((1n << 43n) | (1n << 40n))).toEqual(["CAP_CHECKPOINT_RESTORE", "43"]);
    expect(() => capabilityNames(-1n)).toThrow(RangeError);
  });
});

describe("parseEffectiveCapabilities", () => {
  it("reads the CapEff line, not CapPrm, CapBnd or the others", () => {
    expect(parseEffectiveCapabilities(status("0000000000001000"))).toEqual(["CAP_NET_ADMIN"]);
    expect(parseEffectiveCapabilities(status("0000000000000000"))).toEqual([]);
    // root in a container that lacks CAP_SYS_RESOURCE, as on the machines CI runs on
    const root = parseEffectiveCapabilities(status("000001fffeffffff"));
    expect(root).toHaveLength(40);
    expect(root).not.toContain("CAP_SYS_RESOURCE");
    expect(parseEffectiveCapabilities(status("000001FFFFFFFFFF"))).toEqual(CAPABILITY_NAMES);
  });

  it("refuses text without a well-formed CapEff line", () => {
    expect(() => parseEffectiveCapabilities("Name:\tnode\nCapPrm:\t0000000000001000\n")).toThrow(RangeError);
    expect(() => parseEffectiveCapabilities(status("zz00000000001000"))).toThrow(RangeError);
    expect(() => parseEffectiveCapabilities(status("00000000000000001000"))).toThrow(RangeError); // 20 digits
    expect(() => parseEffectiveCapabilities("XCapEff:\t0000000000001000\n")).toThrow(RangeError);
  });

  it("readCapabilities is this process's CapEff", () => {
    if (process.platform !== "linux") {
      expect(readCapabilities()).toEqual([]);
      return;
    }
    const line = /^CapEff:\s*(\w+)$/m.exec(readFileSync("/proc/self/status", "utf8"))![1]!;
    expect(readCapabilities()).toEqual(capabilityNames(BigInt(`0x${line}`)));
  });
});

describe("the start-up line's words", () => {
  it("describes a set briefly", () => {
    expect(describeCapabilities([])).toBe("no capabilities");
    expect(describeCapabilities(["CAP_NET_ADMIN"])).toBe("CAP_NET_ADMIN");
    expect(describeCapabilities(CAPABILITY_NAMES)).toBe("every capability");
    expect(describeCapabilities(CAPABILITY_NAMES.filter((n) => n !== "CAP_SYS_RESOURCE"))).toBe(
      "40 capabilities (all but CAP_SYS_RESOURCE)",
    );
    const eight = CAPABILITY_NAMES.slice(0, 8);
    expect(describeCapabilities(eight)).toBe(`8 capabilities (${eight.join(", ")})`);
  });

  it("warns about capabilities the source does not need, and only then", () => {
    const netlink = ["CAP_NET_ADMIN"];
    expect(excessCapabilities({ held: ["CAP_NET_ADMIN"], needed: netlink, euid: 65534 })).toBeUndefined();
    expect(excessCapabilities({ held: [], needed: [], euid: 65534 })).toBeUndefined();
    expect(excessCapabilities({ held: CAPABILITY_NAMES, needed: netlink, euid: 0 })).toBe(
      'running as root with every capability; taskwire needs only CAP_NET_ADMIN: run it as a user holding just that (setpriv or deploy/taskwire.service; README, "Privileges: only CAP_NET_ADMIN")',
    );
    expect(excessCapabilities({ held: ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"], needed: netlink, euid: 1000 })).toBe(
      "running as uid 1000 with CAP_NET_ADMIN, CAP_SYS_ADMIN; taskwire needs only CAP_NET_ADMIN: run it as a user holding just that" +
        ' (setpriv or deploy/taskwire.service; README, "Privileges: only CAP_NET_ADMIN")',
    );
    expect(excessCapabilities({ held: ["CAP_NET_ADMIN"], needed: [], euid: undefined })).toBe(
      "running with CAP_NET_ADMIN; taskwire needs no capabilities with this source: run it as an unprivileged user",
    );
  });
});
