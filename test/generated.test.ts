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
    const template = readFileSync(join(root, "buf.gen.yaml"), "utf8")
      .replace(/out: src\/gen/, `out: ${join(tmp, "server")}`)
      .replace(/out: clients\/ts\/src\/gen/, `out: ${join(tmp, "sdk")}`);
    expect(template).toContain(tmp);
    writeFileSync(join(tmp, "buf.gen.yaml"), template);
    execFileSync(join(root, "node_modules/.bin/buf"), ["generate", "--template", join(tmp, "buf.gen.yaml")], { cwd: root, stdio: "pipe" });
    for (const [fresh, committed] of [["server", "src/gen"], ["sdk", "clients/ts/src/gen"]] as const) {
      const want = files(join(tmp, fresh)).map((f) => relative(join(tmp, fresh), f)).sort();
      const have = files(join(root, committed)).map((f) => relative(join(root, committed), f)).sort();
      expect(have, `${committed} has other files than proto/ generates; run npm run generate`).toEqual(want);
      for (const f of want) {
        const same = readFileSync(join(tmp, fresh, f), "utf8") === readFileSync(join(root, committed, f), "utf8");
        expect(same, `${committed}/${f} is stale against proto/; run npm run generate and commit`).toBe(true);
      }
    }
  });
});
