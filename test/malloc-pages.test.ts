/**
 * `serve`'s start-up line on malloc's pages (src/sys/malloc-pages.ts): what
 * it says for each THP mode and tunable, and that a real `taskwire serve`
 * says it, with and without the tunable the project's start paths set.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  glibcVersion,
  MALLOC_HUGE_PAGES,
  MALLOC_REUSE,
  MALLOC_TUNABLES,
  mallocPagesLine,
  thpMode,
} from "../src/sys/malloc-pages.ts";

const root = new URL("..", import.meta.url).pathname;

describe("the malloc pages line", () => {
  it("names what the heap is in, and says nothing more when every tunable is set", () => {
    expect(mallocPagesLine(MALLOC_TUNABLES, "madvise")).toBe(
      `malloc heap: transparent huge pages (GLIBC_TUNABLES=${MALLOC_TUNABLES})`,
    );
    expect(mallocPagesLine(MALLOC_TUNABLES, "always")).toBe(
      "malloc heap: transparent huge pages (the host's THP mode is always)",
    );
    // glibc takes hex and ignores spaces around an entry's value; other tunables beside change nothing
    const spelled = "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1 :glibc.malloc.trim_threshold=0x2000000:" +
      "glibc.malloc.mmap_threshold=4194304";
    expect(mallocPagesLine(spelled, "madvise")).toBe(`malloc heap: transparent huge pages (GLIBC_TUNABLES=${spelled})`);
    expect(mallocPagesLine(MALLOC_REUSE, "never")).toBeUndefined();
    expect(mallocPagesLine(undefined, undefined)).toBeUndefined(); // not Linux, or no THP file: nothing known
  });

  it("adds only the tunables that are missing or too low, each with its reason", () => {
    for (const none of [undefined, "", "glibc.malloc.hugetlb=0", "glibc.malloc.hugetlb=10"]) {
      expect(mallocPagesLine(none, "madvise"), String(none)).toBe(
        `malloc heap: 4 KiB pages; set ${MALLOC_TUNABLES} in GLIBC_TUNABLES for huge pages (about 1 us less CPU ` +
          "per record in exit storms) and freed heap kept for reuse (fewer page faults in exit storms) (npm start, " +
          "deno task start, deploy/ and the image set them where GLIBC_TUNABLES is unset; README, Performance)",
      );
    }
    // an older unit: huge pages alone
    expect(mallocPagesLine(MALLOC_HUGE_PAGES, "madvise")).toMatch(
      new RegExp(
        `^malloc heap: transparent huge pages \\(GLIBC_TUNABLES=${MALLOC_HUGE_PAGES}\\); set ${MALLOC_REUSE} `,
      ),
    );
    // A trim threshold alone stops glibc moving the mmap threshold, which stays at 128 KiB: worse than neither.
    for (const trim of ["glibc.malloc.trim_threshold=33554432", "glibc.malloc.trim_threshold=0"]) {
      expect(mallocPagesLine(`${MALLOC_HUGE_PAGES}:${trim}`, "madvise"), trim).toMatch(
        /; set glibc\.malloc\.(trim_threshold=33554432:glibc\.malloc\.)?mmap_threshold=4194304 in GLIBC_TUNABLES for freed heap/,
      );
    }
    expect(mallocPagesLine(`${MALLOC_HUGE_PAGES}:glibc.malloc.trim_threshold=0`, "madvise")).toContain(
      `set ${MALLOC_REUSE} `,
    );
    expect(mallocPagesLine("glibc.malloc.mmap_threshold=131072", "always")).toMatch(
      /THP mode is always\); set glibc\.malloc\.trim_threshold=33554432:glibc\.malloc\.mmap_threshold=4194304 /,
    );
    // where THP is off, huge pages are not asked for, but freed heap still is
    expect(mallocPagesLine(MALLOC_HUGE_PAGES, "never")).toMatch(
      new RegExp(
        `^malloc heap: 4 KiB pages \\(the host's THP mode is never\\); set ${MALLOC_REUSE} in GLIBC_TUNABLES for freed`,
      ),
    );
    expect(mallocPagesLine("glibc.malloc.hugetlb=2", "madvise")).toMatch(/^malloc heap: hugetlbfs huge pages/);
  });

  it("names a glibc.malloc entry glibc does not know (it passes over it silently), and what to set instead", () => {
    const typo = `${MALLOC_HUGE_PAGES}:glibc.malloc.trim_treshold=33554432:glibc.malloc.mmap_threshold=4194304`;
    expect(mallocPagesLine(typo, "madvise")).toBe(
      `malloc heap: transparent huge pages (GLIBC_TUNABLES=${typo}); glibc ignores glibc.malloc.trim_treshold ` +
        "(no such tunable: misspelt?); set glibc.malloc.trim_threshold=33554432 in GLIBC_TUNABLES for freed heap " +
        "kept for reuse (fewer page faults in exit storms) (npm start, deno task start, deploy/ and the image set " +
        "them where GLIBC_TUNABLES is unset; README, Performance)",
    );
    // every tunable this glibc lists is known (ld.so --list-tunables): none of them is called unknown
    const known = "glibc.malloc.arena_max=2:glibc.malloc.arena_test=1:glibc.malloc.check=0:glibc.malloc.mmap_max=9:" +
      "glibc.malloc.mxfast=0:glibc.malloc.perturb=0:glibc.malloc.tcache_count=7:glibc.malloc.tcache_max=9:" +
      `glibc.malloc.tcache_unsorted_limit=0:glibc.malloc.top_pad=0:${MALLOC_TUNABLES}`;
    expect(mallocPagesLine(known, "madvise")).toBe(`malloc heap: transparent huge pages (GLIBC_TUNABLES=${known})`);
    expect(mallocPagesLine(`${MALLOC_REUSE}:glibc.malloc.nope=1`, "never")).toMatch(
      /glibc ignores glibc\.malloc\.nope/,
    );
  });

  it("reads entries as glibc 2.36 does: no spaces in names, strtoul's numbers, hugetlb from 2.35 on", () => {
    const pages = (t: string, glibc?: string) => mallocPagesLine(t, "madvise", { glibc })!;
    // glibc passes over an entry with a space before or in its name; a space after the "=" it skips
    for (const spaced of [" glibc.malloc.hugetlb=1", "glibc.malloc.hugetlb =1"]) {
      expect(pages(`${spaced}:${MALLOC_REUSE}`), spaced).toBe(
        `malloc heap: 4 KiB pages; glibc ignores "${spaced}" (a space in or around the name, or no "="); set ` +
          `${MALLOC_HUGE_PAGES} in GLIBC_TUNABLES for huge pages (about 1 us less CPU per record in exit storms) ` +
          "(npm start, deno task start, deploy/ and the image set them where GLIBC_TUNABLES is unset; README, " +
          "Performance)",
      );
    }
    expect(pages(`${MALLOC_HUGE_PAGES}:glibc.malloc.trim_threshold= 0x2000000:glibc.malloc.mmap_threshold=4194304x`))
      .not.toMatch(/; set /);
    // 1e7 is 1 and a leading 0 is octal (033554432 is 7 MiB): too low, however they read in JavaScript
    expect(pages(`${MALLOC_HUGE_PAGES}:glibc.malloc.trim_threshold=033554432:glibc.malloc.mmap_threshold=1e7`))
      .toMatch(new RegExp(`; set ${MALLOC_REUSE} in GLIBC_TUNABLES for freed heap`));
    expect(pages(MALLOC_TUNABLES, "2.34")).toBe(
      "malloc heap: 4 KiB pages; glibc ignores glibc.malloc.hugetlb (glibc 2.34 has none: 2.35 and later)",
    );
    expect(pages(MALLOC_TUNABLES, "2.35")).toMatch(/^malloc heap: transparent huge pages \(GLIBC_TUNABLES=[^)]*\)$/);
    expect(pages(`glibc.malloc.hugetlb=2:${MALLOC_REUSE}`)).toMatch(
      /^malloc heap: hugetlbfs huge pages where the host reserves them \(HugePages_Total in \/proc\/meminfo\), else 4 KiB/,
    );
  });

  it("takes the glibc version from Node's process report, as ld.so says it", (ctx) => {
    const ldso = "/lib64/ld-linux-x86-64.so.2";
    if (!existsSync(ldso)) ctx.skip(`${ldso} is missing (not x86-64 glibc): no version to compare`);
    const said = /version (\d+\.\d+)/.exec(execFileSync(ldso, ["--version"], { encoding: "utf8" }))?.[1];
    expect(glibcVersion()).toBe(said);
  });

  it("knows every malloc tunable this machine's glibc lists", (ctx) => {
    const ldso = "/lib64/ld-linux-x86-64.so.2";
    if (!existsSync(ldso)) ctx.skip(`${ldso} is missing (not x86-64 glibc): no tunable list to compare`);
    const names = execFileSync(ldso, ["--list-tunables"], { encoding: "utf8" }).match(/^glibc\.malloc\.\w+/gm) ?? [];
    expect(names.length).toBeGreaterThan(5);
    const all = names.map((n) => `${n}=1`).join(":");
    expect(mallocPagesLine(all, "madvise")).not.toMatch(/glibc ignores/);
  });

  it("reads the host's THP mode from the bracketed word", () => {
    const file = join(mkdtempSync(join(tmpdir(), "tw-thp-")), "enabled");
    writeFileSync(file, "always [madvise] never\n");
    expect(thpMode(file)).toBe("madvise");
    expect(thpMode(join(file, "missing"))).toBeUndefined();
  });

  it("is printed by a real `taskwire serve` at start, as its environment has it", async (ctx) => {
    const mode = thpMode();
    if (mode !== "madvise") ctx.skip(`this host's THP mode is ${mode ?? "unreadable"}, not madvise`);
    const node = (tunables: string) =>
      startLine(process.execPath, ["bin/taskwire.js", ...SERVE], { GLIBC_TUNABLES: tunables });
    expect(await node(MALLOC_TUNABLES)).toBe(`malloc heap: transparent huge pages (GLIBC_TUNABLES=${MALLOC_TUNABLES})`);
    expect(await node("")).toMatch(new RegExp(`^malloc heap: 4 KiB pages; set ${MALLOC_TUNABLES} in GLIBC_TUNABLES`));
  });

  it(
    "is printed on Deno too, whose `deno task start` sets the tunables unless the environment has its own",
    async (ctx) => {
      const mode = thpMode();
      if (mode !== "madvise") ctx.skip(`this host's THP mode is ${mode ?? "unreadable"}, not madvise`);
      const deno = (env: Record<string, string | undefined>) =>
        startLine(`${root}node_modules/deno/deno`, ["task", "start", ...SERVE.slice(1)], env); // the task says serve
      expect(await deno({ GLIBC_TUNABLES: undefined })).toBe(
        `malloc heap: transparent huge pages (GLIBC_TUNABLES=${MALLOC_TUNABLES})`,
      );
      expect(await deno({ GLIBC_TUNABLES: MALLOC_HUGE_PAGES })).toMatch(
        new RegExp(
          `^malloc heap: transparent huge pages \\(GLIBC_TUNABLES=${MALLOC_HUGE_PAGES}\\); set ${MALLOC_REUSE} `,
        ),
      );
    },
    60_000,
  );
});

const SERVE = ["serve", "--source", "sim", "--port", "0"];

// The server's "malloc heap: ..." start-up line; the server (its whole process group: a task's shell and runtime)
// is stopped once it is read.
function startLine(bin: string, args: string[], env: Record<string, string | undefined>): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const child = spawn(bin, args, { cwd: root, env: { ...process.env, ...env }, detached: true });
    const stop = () => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // the group has gone already
      }
    };
    let err = "";
    child.once(
      "exit",
      () => (clearTimeout(timer), reject(new Error(`the server exited before its malloc line: ${err}`))),
    );
    const timer = setTimeout(() => (stop(), reject(new Error(`no malloc line in: ${err}`))), 30_000);
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      const line = /^taskwire: (malloc heap: .*)$/m.exec(err);
      if (line) (clearTimeout(timer), stop(), resolve(line[1]!));
    });
  });
}
