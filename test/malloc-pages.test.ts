/**
 * `serve`'s start-up line on malloc's pages (src/sys/malloc-pages.ts): what
 * it says for each THP mode and tunable, and that a real `taskwire serve`
 * says it, with and without the tunable the project's start paths set.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MALLOC_HUGE_PAGES, MALLOC_REUSE, MALLOC_TUNABLES, mallocPagesLine, thpMode } from "../src/sys/malloc-pages.ts";

const root = new URL("..", import.meta.url).pathname;

describe("the malloc pages line", () => {
  it("names huge pages with the tunable, tells how to get them without it, and keeps quiet where THP is off", () => {
    expect(mallocPagesLine(MALLOC_TUNABLES, "madvise")).toBe(
      `malloc heap: transparent huge pages (GLIBC_TUNABLES=${MALLOC_TUNABLES})`,
    );
    expect(mallocPagesLine(`glibc.malloc.arena_max=2:${MALLOC_HUGE_PAGES}`, "madvise")).toMatch(/transparent huge/);
    for (const none of [undefined, "", "glibc.malloc.hugetlb=0", "glibc.malloc.hugetlb=10"]) {
      expect(mallocPagesLine(none, "madvise"), String(none)).toMatch(
        /^malloc heap: 4 KiB pages; start the server with GLIBC_TUNABLES=glibc\.malloc\.hugetlb=1:glibc\.malloc\.trim/,
      );
    }
    expect(mallocPagesLine(undefined, "madvise")).toContain(MALLOC_TUNABLES);
    expect(mallocPagesLine(undefined, "always")).toMatch(/THP mode is always/);
    expect(mallocPagesLine(MALLOC_TUNABLES, "always")).toBe(
      "malloc heap: transparent huge pages (the host's THP mode is always)",
    );
    expect(mallocPagesLine(MALLOC_HUGE_PAGES, "never")).toBeUndefined();
    expect(mallocPagesLine(undefined, undefined)).toBeUndefined();
  });

  it("tells a server started with huge pages alone (an older unit) how to keep freed heap for reuse", () => {
    const line = mallocPagesLine(MALLOC_HUGE_PAGES, "madvise");
    expect(line).toMatch(
      /^malloc heap: transparent huge pages \(GLIBC_TUNABLES=glibc\.malloc\.hugetlb=1\); freed heap/,
    );
    expect(line).toContain(`add ${MALLOC_REUSE} to GLIBC_TUNABLES`);
    expect(mallocPagesLine(undefined, "always")).toContain(`add ${MALLOC_REUSE}`);
    expect(mallocPagesLine(`${MALLOC_HUGE_PAGES}:glibc.malloc.trim_threshold=0`, "madvise")).not.toMatch(/freed heap/);
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
    const startLines = (tunables: string) =>
      new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, ["bin/taskwire.js", "serve", "--source", "sim", "--port", "0"], {
          cwd: root,
          env: { ...process.env, GLIBC_TUNABLES: tunables },
        });
        let err = "";
        const timer = setTimeout(() => (child.kill(), reject(new Error(`no malloc line in: ${err}`))), 15_000);
        child.stderr.on("data", (d: Buffer) => {
          err += d.toString();
          const line = /^taskwire: (malloc heap: .*)$/m.exec(err);
          if (line) (clearTimeout(timer), child.kill(), resolve(line[1]!));
        });
      });
    expect(await startLines(MALLOC_TUNABLES)).toBe(
      `malloc heap: transparent huge pages (GLIBC_TUNABLES=${MALLOC_TUNABLES})`,
    );
    expect(await startLines("")).toMatch(/^malloc heap: 4 KiB pages; start the server with GLIBC_TUNABLES=/);
  });
});
