/** The SDK as a package: publint (strict) on what npm would publish, and the files in it. */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const root = new URL("..", import.meta.url).pathname;
const run = promisify(execFile);

describe("@taskwire/client package", () => {
  it("passes publint --strict", async () => {
    const { stdout } = await run(`${root}node_modules/.bin/publint`, ["--strict", "clients/ts"], { cwd: root });
    expect(stdout).not.toMatch(/Errors|Warnings/);
  }, 60_000);

  it("packs its ESM build, types and sources (built by npm test's build step)", async () => {
    const { stdout } = await run("npm", ["pack", "--dry-run", "--json"], { cwd: `${root}clients/ts` });
    const files = (JSON.parse(stdout)[0].files as { path: string }[]).map((f) => f.path);
    for (
      const f of [
        "dist/mod.js",
        "dist/mod.d.ts",
        "dist/node.js",
        "dist/node.d.ts",
        "src/mod.ts",
        "src/gen/taskwire/v1/taskstats_pb.ts",
        "package.json",
      ]
    ) {
      expect(files, f).toContain(f);
    }
  }, 60_000);

  it("JSR's deno.json exports the same entry points and versions as package.json", () => {
    const pkg = JSON.parse(readFileSync(`${root}clients/ts/package.json`, "utf8"));
    const jsr = JSON.parse(readFileSync(`${root}clients/ts/deno.json`, "utf8"));
    expect(jsr.name).toBe(pkg.name);
    expect(jsr.version).toBe(pkg.version);
    expect(jsr.exports["."]).toBe("./src/mod.ts");
    for (const [dep, version] of Object.entries(pkg.dependencies as Record<string, string>)) {
      expect(jsr.imports[dep]).toBe(`npm:${dep}@${version}`);
    }
  });
});
