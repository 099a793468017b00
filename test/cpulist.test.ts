import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  CPULIST_STEPS_PER_CPU,
  CpulistError,
  createPossibleCpus,
  formatCpulist,
  parseCpulist,
  parseCpumask,
} from "../src/kernel/cpulist.ts";

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

describe("parseCpulist (lib/bitmap-str.c bitmap_parselist)", () => {
  it.each([
    // Examples from the kernel's bitmap_parselist() documentation and Documentation/admin-guide/cputopology.
    ["0-1023:2/256", 1024, [0, 1, 256, 257, 512, 513, 768, 769]],
    ["1-3,5,7-8", 16, [1, 2, 3, 5, 7, 8]],
    ["0-15:2/4", 16, [0, 1, 4, 5, 8, 9, 12, 13]],
    ["0", 8, [0]],
    ["all", 4, [0, 1, 2, 3]],
    ["ALL:1/2", 6, [0, 2, 4]],
    ["0-N", 4, [0, 1, 2, 3]],
    ["N", 4, [3]],
    ["3-N:1/2", 8, [3, 5, 7]],
    [",,1,, 2\t3\n", 8, [1, 2, 3]],
    ["5,1,5,1-2", 8, [1, 2, 5]],
    ["", 8, []],
    ["0-7:8/8", 8, range(0, 7)],
    // Newlines, as kernel 6.18 parses them (checked against it through TASKSTATS_CMD_ATTR_REGISTER_CPUMASK):
    // bitmap_parse_region() returns NULL (the end of the list) when a region without ":used/group" stops at
    // end_of_str() ('\0' or '\n'), so nothing after such a newline is read, not even garbage...
    ["1\n2", 8, [1]],
    ["1\nx", 8, [1]],
    ["3\nall", 4, [3]],
    ["1\u00002", 8, [1]],
    // ...while after a ":used/group" suffix, or a separator, bitmap_find_region() skips it as whitespace.
    ["0-3:1/2\n5", 8, [0, 2, 5]],
    ["1,\n2", 8, [1, 2]],
    ["\n1", 8, [1]],
    ["1\v2\f3\r4", 8, [1, 2, 3, 4]], // isspace(): \t \n \v \f \r and space
    // bitmap_set_region() steps by group_len in unsigned int: a group within start of 2^32 wraps below start.
    ["5-7:1/4294967295", 8, range(0, 5)],
    ["5-7:1/4294967294", 8, [1, 3, 5]],
  ])("%j on %i bits", (text, nbits, want) => {
    expect(parseCpulist(text, nbits)).toEqual(want);
  });

  it.each([
    ["1-", "EINVAL"],
    ["-1", "EINVAL"],
    ["1-2-3", "EINVAL"],
    ["a", "EINVAL"],
    ["3-1", "EINVAL"],
    ["0-3:0/0", "EINVAL"],
    ["0-3:3/2", "EINVAL"],
    ["0-3:1", "EINVAL"],
    ["1;2", "EINVAL"],
    ["8", "ERANGE"],
    ["0-8", "ERANGE"],
    ["99999999999", "EOVERFLOW"],
    ["0x1", "EINVAL"],
    ["+1", "EINVAL"],
    // A newline that the list goes on after is whitespace, and what follows must parse.
    ["1,\nx", "EINVAL"],
    ["0-3:1/2\nx", "EINVAL"],
    // Only the kernel's isspace() separates: a Unicode space is a byte it refuses.
    ["\u00a01", "EINVAL"],
    ["1\u20032", "EINVAL"],
    ["1\u3000", "EINVAL"],
    // end + 1 wraps to a group of 0 in unsigned int: EINVAL before the ERANGE check.
    ["4294967295", "EINVAL"],
    ["0-4294967295", "EINVAL"],
  ])("refuses %j with %s", (text, errno) => {
    const err = (() => {
      try {
        parseCpulist(text, 8);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(CpulistError);
    expect((err as CpulistError).errno).toBe(errno);
    expect((err as CpulistError).message).toContain(JSON.stringify(text));
  });

  it("names the CPU, not a group never written, when a range ends at 4294967295", () => {
    for (const text of ["4294967295", "0-4294967295"]) {
      expect(() => parseCpulist(text, 8)).toThrow(
        /CPU 4294967295 is past the last CPU number the kernel's parser takes/,
      );
    }
    expect(() => parseCpulist("0-7:0/0", 8)).toThrow(/group size 0 in 0-7:0\/0/);
  });

  it("sets overlapping wrapped groups in linear time, not CPU by CPU (a request cannot burn the CPU)", () => {
    // 65536 groups, each from its base up to CPU 65535: 2^31 CPUs set one by one, or one merged span.
    const t0 = performance.now();
    expect(parseCpulist("N-N:4294967295/4294967295", 65536)).toEqual(range(0, 65535));
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it("sets what the kernel's walk sets, bit by bit, for any list of regions (wrapping groups too)", () => {
    // bitmap_set_region() as the kernel runs it: each group's bits set one by one, bases stepped in unsigned int.
    const reference = (regions: [number, number, number, number][], nbits: number): number[] => {
      const bits = new Uint8Array(nbits);
      for (const [start, end, used, group] of regions) {
        for (let base = start; base <= end; base = (base + group) >>> 0) {
          for (let cpu = base; cpu <= Math.min(end, base + used - 1); cpu++) bits[cpu] = 1;
        }
      }
      return range(0, nbits - 1).filter((cpu) => bits[cpu] === 1);
    };
    const nbits = 48;
    const group = fc.oneof(fc.integer({ min: 1, max: 60 }), fc.integer({ min: 2 ** 32 - 60, max: 2 ** 32 - 1 }));
    const region = fc.tuple(fc.integer({ min: 0, max: nbits - 1 }), fc.integer({ min: 0, max: nbits - 1 }), group)
      .chain(([a, b, g]) =>
        fc.integer({ min: 0, max: g }).map((u): [number, number, number, number] => [
          Math.min(a, b),
          Math.max(a, b),
          u,
          g,
        ])
      );
    fc.assert(
      fc.property(fc.array(region, { minLength: 1, maxLength: 6 }), (regions) => {
        const text = regions.map(([a, b, u, g]) => `${a}-${b}:${u}/${g}`).join(",");
        expect(parseCpulist(text, nbits)).toEqual(reference(regions, nbits));
      }),
      { numRuns: 3000 },
    );
  });

  it("answers the longest lists a client may send on 4,096 CPUs in milliseconds, not seconds", () => {
    // Before: every group of every region was a span, merged by one sort: "all:1/1," to the limit took 12-17 s.
    const possible = createPossibleCpus("0-4095");
    const limit = 100 + 6 * 4096 - 1;
    const fill = (next: (i: number) => string) => {
      let text = "";
      for (let i = 0; text.length + next(i).length <= limit; i++) text += next(i);
      return text.replace(/,$/, "");
    };
    const time = (f: () => unknown) => {
      const t0 = performance.now();
      const out = f();
      expect(performance.now() - t0).toBeLessThan(1000);
      return out;
    };
    // One region over and over: walked once.
    expect(time(() => parseCpumask(fill(() => "all:1/1,"), possible))).toEqual(range(0, 4095));
    // Distinct regions of 2,048 groups each, and regions whose groups wrap: refused once past the step budget.
    for (const next of [(i: number) => `${i % 4096}-4095:1/2,`, (i: number) => `${i % 4096}-4095:1/4294967295,`]) {
      const err = time(() => {
        try {
          return parseCpumask(fill(next), possible);
        } catch (e) {
          return e;
        }
      });
      expect(err).toBeInstanceOf(CpulistError);
      expect(err).toMatchObject({ errno: "E2BIG", message: /more than 32768 groups .*name the CPUs as plain ranges/ });
    }
  });

  it("takes up to 8 group steps per CPU, and refuses the list one step past them (E2BIG)", () => {
    expect(CPULIST_STEPS_PER_CPU).toBe(8);
    // On 64 CPUs: 512 steps. "i-63:1/2" steps through floor((63 - i) / 2) + 1 groups.
    const regions = (n: number) => Array.from({ length: n }, (_, i) => `${i}-63:1/2`).join(",");
    let n = 0;
    for (let steps = 0; steps + Math.floor((63 - n) / 2) + 1 <= 512; n++) steps += Math.floor((63 - n) / 2) + 1;
    expect(parseCpulist(regions(n), 64)).toEqual(range(0, 63));
    expect(() => parseCpulist(regions(n + 1), 64)).toThrow(expect.objectContaining({ errno: "E2BIG" }));
    // The same region repeated is walked once, however often it is listed.
    expect(parseCpulist(Array(200).fill("0-63:1/2").join(","), 64)).toEqual(range(0, 63).filter((c) => c % 2 === 0));
  });

  it("rejects a bad bitmap width with RangeError", () => {
    expect(() => parseCpulist("0", 0)).toThrow(RangeError);
  });
});

describe("formatCpulist", () => {
  it("prints ranges canonically", () => {
    expect(formatCpulist([5, 1, 2, 3, 7, 8, 8])).toBe("1-3,5,7-8");
    expect(formatCpulist([])).toBe("");
    expect(formatCpulist([0])).toBe("0");
  });

  it("round-trips: parse(format(s)) = s for any set", () => {
    fc.assert(fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 4095 }), { maxLength: 300 }), (cpus) => {
      expect(parseCpulist(formatCpulist(cpus), 4096)).toEqual([...cpus].sort((a, b) => a - b));
    }));
  });

  it("is canonical: format(parse(x)) is a fixed point for any parseable x", () => {
    const token = fc.oneof(
      fc.integer({ min: 0, max: 63 }).map(String),
      fc.tuple(fc.integer({ min: 0, max: 63 }), fc.integer({ min: 0, max: 63 })).map(([a, b]) =>
        `${Math.min(a, b)}-${Math.max(a, b)}`
      ),
      fc.tuple(fc.integer({ min: 0, max: 31 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 8 }))
        .map(([a, u, g]) => `${a}-63:${Math.min(u, g)}/${g}`),
    );
    fc.assert(fc.property(fc.array(token, { minLength: 1, maxLength: 8 }), (tokens) => {
      const canonical = formatCpulist(parseCpulist(tokens.join(","), 64));
      expect(formatCpulist(parseCpulist(canonical, 64))).toBe(canonical);
    }));
  });

  it("never throws anything but CpulistError on garbage", () => {
    const alphabet = fc.constantFrom(..."0123456789-,:/ N\nall\t;x".split(""));
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.array(alphabet, { maxLength: 40 }).map((a) => a.join(""))), (text) => {
        try {
          const cpus = parseCpulist(text, 16);
          expect(cpus.every((c) => Number.isInteger(c) && c >= 0 && c < 16)).toBe(true);
        } catch (err) {
          expect(err).toBeInstanceOf(CpulistError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("parseCpumask (kernel/taskstats.c parse + add_del_listener)", () => {
  const possible = createPossibleCpus("0-7");

  it("is ERANGE past nr_cpu_ids, EINVAL below it but outside the possible set, as the kernel answers", () => {
    expect(() => parseCpumask("0-8", possible)).toThrow(expect.objectContaining({ errno: "ERANGE" }));
    expect(() => parseCpumask("2", createPossibleCpus([0, 1, 4]))).toThrow(
      expect.objectContaining({ errno: "EINVAL" }),
    );
  });

  it("echoes at most 64 characters of the mask, with its length, however long it is", () => {
    const big = createPossibleCpus([0, 1 << 20]); // a mask limit of 112 bytes: long masks are E2BIG without an echo
    for (const [text, errno] of [["7".repeat(5000) + "x", "EOVERFLOW"], [`${"0,".repeat(40)}x`, "EINVAL"]] as const) {
      const wide = (() => {
        try {
          parseCpulist(text, 8);
        } catch (e) {
          return e as CpulistError;
        }
      })();
      expect(wide?.errno).toBe(errno);
      expect(wide!.message.length).toBeLessThan(400);
      expect(wide!.message).toContain(`(${text.length} characters)`);
    }
    const e2big = (() => {
      try {
        parseCpumask("1".repeat(2 << 20), big);
      } catch (e) {
        return e as CpulistError;
      }
    })();
    expect(e2big?.errno).toBe("E2BIG");
    expect(e2big!.message.length).toBeLessThan(200);
    const outside = (() => {
      try {
        parseCpumask(" 0,".repeat(30), createPossibleCpus([1]));
      } catch (e) {
        return e as CpulistError;
      }
    })();
    expect(outside!.message).toMatch(
      /^cpumask " 0, 0,.*…" \(90 characters\): CPU 0 is not possible; possible CPUs are 1$/,
    );
  });

  it("accepts a subset of the possible CPUs", () => {
    expect(parseCpumask("1-3,5", possible)).toEqual([1, 2, 3, 5]);
  });

  it("refuses CPUs outside the possible set, naming the CPU and the set", () => {
    expect(() => parseCpumask("0-4096", possible)).toThrow(/CPU 4096 .*possible CPUs are 0-7/);
    const sparse = createPossibleCpus([0, 1, 4, 5]);
    expect(() => parseCpumask("1-4", sparse)).toThrow(/CPU 2-3 is not possible; possible CPUs are 0-1,4-5/);
  });

  it("refuses an empty mask with EINVAL", () => {
    expect(() => parseCpumask(", ", possible)).toThrow(expect.objectContaining({ errno: "EINVAL" }));
  });

  it("refuses a mask longer than 100 + 6 x NR_CPUS bytes with E2BIG", () => {
    const max = 100 + 6 * 8; // including the NUL
    expect(parseCpumask("0,".repeat((max - 2) / 2).slice(0, max - 1), possible)).toEqual([0]);
    const err = (() => {
      try {
        parseCpumask("0,".repeat(max), possible);
      } catch (e) {
        return e as CpulistError;
      }
    })();
    expect(err?.errno).toBe("E2BIG");
    expect(err?.message).toMatch(/over the limit of 148/);
  });
});
