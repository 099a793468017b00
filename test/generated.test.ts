/** Fails when committed generated code (src/gen, clients/ts/src/gen) is stale against proto/. */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const root = new URL("..", import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), "taskwire-gen-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

describe("generated code", () => {
  it("matches what buf generate makes from proto/ now", () => {
    const templates: [template: string, committed: string][] = [["buf.gen.yaml", "src/gen"], [
      "buf.gen.sdk.yaml",
      "clients/ts/src/gen",
    ]];
    for (const [template, committed] of templates) {
      const out = join(tmp, committed.replace(/\//g, "_"));
      const text = readFileSync(join(root, template), "utf8").replace(`out: ${committed}`, `out: ${out}`);
      expect(text, `${template} writes ${committed}`).toContain(out);
      writeFileSync(join(tmp, template), text);
      execFileSync(join(root, "node_modules/.bin/buf"), ["generate", "--template", join(tmp, template)], {
        cwd: root,
        stdio: "pipe",
      });
      const want = files(out).map((f) => relative(out, f)).sort();
      const have = files(join(root, committed)).map((f) => relative(join(root, committed), f)).sort();
      expect(have, `${committed} has other files than proto/ generates; run npm run generate`).toEqual(want);
      for (const f of want) {
        const same = readFileSync(join(out, f), "utf8") === readFileSync(join(root, committed, f), "utf8");
        expect(same, `${committed}/${f} is stale against proto/; run npm run generate and commit`).toBe(true);
      }
    }
  });
});
