/**
 * Both packages as npm publishes them (`npm pack`), installed into an empty
 * directory like a user's project: the CLI, the netlink source (koffi, an
 * optional dependency) and the SDK's examples, compiled against the installed
 * types, all run from there. Packs the build `npm test` made first.
 */
import { execFile } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnServer } from "./helpers.ts";
import { netlinkMissing } from "./native.ts";

const root = new URL("..", import.meta.url).pathname;
const missing = process.platform === "linux"
  ? await netlinkMissing()
  : `taskstats is a Linux interface and this is ${process.platform}`;
const dir = mkdtempSync(join(tmpdir(), "tw-pack-"));
const project = join(dir, "project");
const taskwire = join(project, "node_modules/.bin/taskwire");
// Nested npm must not see the npm_* variables of an enclosing `npm test` (npm_config_local_prefix and the like).
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith("npm_")));

interface Ran {
  code: number;
  out: string;
  err: string;
}

function run(bin: string, args: string[], cwd: string, timeout = 30_000): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(bin, args, { cwd, env, timeout, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === "number" ? err.code : 1;
      resolve({
        code,
        out: stdout,
        err: err !== null && typeof err.code !== "number" ? `${stderr}\n${err.message}` : stderr,
      });
    });
  });
}

async function ok(bin: string, args: string[], cwd: string, timeout?: number): Promise<string> {
  const r = await run(bin, args, cwd, timeout);
  if (r.code !== 0) throw new Error(`${bin} ${args.join(" ")} exited ${r.code}: ${r.err}`);
  return r.out;
}

const lines = (s: string) => s.trim().split("\n").filter(Boolean);

let compiled: Promise<string> | undefined;
/** Copies the installed SDK's examples into the project, as a user would, and compiles them to out/ with the repo's tsc. */
function compileExamples(): Promise<string> {
  return (compiled ??= (async () => {
    const examples = join(project, "examples");
    mkdirSync(examples);
    for (const f of ["get-pid.ts", "watch-exits.ts"]) {
      copyFileSync(join(project, "node_modules/@taskwire/client/examples", f), join(examples, f));
    }
    return ok(
      `${root}node_modules/.bin/tsc`,
      [
        "--strict",
        "--module",
        "nodenext",
        "--moduleResolution",
        "nodenext",
        "--target",
        "es2022",
        "--types",
        "node",
        "--typeRoots",
        `${root}node_modules/@types`,
        "--outDir",
        "out",
        "examples/get-pid.ts",
        "examples/watch-exits.ts",
      ],
      project,
      120_000,
    );
  })());
}

beforeAll(async () => {
  for (const f of ["dist/src/cli/main.js", "dist/web/taskwire-client.js", "clients/ts/dist/node.js"]) {
    if (!existsSync(join(root, f))) throw new Error(`${f} is missing: run \`npm run build\` (npm test does it first)`);
  }
  // --ignore-scripts: prepack would rebuild dist/ under the other test files' feet; npm test built it.
  const tgz = join(dir, "tgz");
  mkdirSync(tgz);
  const packed: string[] = [];
  for (const pkg of [root, join(root, "clients/ts")]) {
    const out = await ok("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", tgz], pkg, 120_000);
    packed.push(join(tgz, (JSON.parse(out) as { filename: string }[])[0]!.filename));
  }
  mkdirSync(project);
  await ok("npm", ["init", "-y"], project);
  await ok("npm", ["pkg", "set", "type=module"], project);
  await ok("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", ...packed], project, 240_000);
}, 300_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("the packages installed from their tarballs into an empty project", () => {
  it("both build on prepack, and the installed SDK is the packed one (with its examples), shared with the CLI", () => {
    for (const pkg of ["package.json", "clients/ts/package.json"]) {
      expect(JSON.parse(readFileSync(join(root, pkg), "utf8")).scripts.prepack, pkg).toBe("npm run build");
    }
    const sdk = join(project, "node_modules/@taskwire/client");
    expect(readdirSync(join(sdk, "examples")).sort()).toEqual(["get-pid.ts", "watch-exits.ts"]);
    expect(existsSync(join(sdk, "dist/node.js"))).toBe(true);
    expect(existsSync(join(project, "node_modules/taskwire/node_modules/@taskwire/client"))).toBe(false);
    expect(existsSync(join(project, "node_modules/koffi/package.json"))).toBe(true);
  });

  it("taskwire serve --source sim serves, and taskwire watch reads 3 exits from it", async () => {
    const server = await spawnServer(taskwire, ["serve", "--source", "sim", "--port", "0"], project);
    try {
      expect(server.runtime).toBe("node");
      const out = await ok(taskwire, ["watch", "--cpus", "0", "--count", "3", "--url", server.url], project);
      const events = lines(out).filter((l) => !l.startsWith("  process ")); // a process's last exit adds its aggregate's line
      expect(events).toHaveLength(3);
      for (const l of events) expect(l).toMatch(/^\d\d:\d\d:\d\d\.\d{3} cpu 0 pid \d+ ppid \d+ /);
      const ui = await fetch(`${server.url}/ui/taskwire-client.js`);
      expect(ui.status).toBe(200); // the browser bundle (dist/web) shipped too
    } finally {
      server.stop();
    }
  }, 60_000);

  it(
    "the SDK's examples compile (strict, NodeNext) against the installed types and run against the sim server",
    async () => {
      await compileExamples();
      const sim = await spawnServer(taskwire, ["serve", "--source", "sim", "--port", "0"], project);
      // No exits here, so the first simulated process (pid 301, the sim's first pid) stays alive.
      const still = await spawnServer(
        taskwire,
        ["serve", "--source", "sim", "--sim-exit-rate", "0", "--port", "0"],
        project,
      );
      try {
        const watched = lines(await ok("node", ["out/watch-exits.js", "--url", sim.url, "--count", "3"], project));
        expect(watched).toHaveLength(3);
        for (const l of watched) {
          expect(l).toMatch(/^cpu 0 pid \d+ \S+ (exit \d+|signal \d+( \([^)]*\))?)$/);
        }

        const got = await ok("node", ["out/get-pid.js", "--url", still.url, "301"], project);
        expect(got).toMatch(
          /^pid 301 \S+, user \d+\.\d ms, system \d+\.\d ms, cpu delay \d+\.\d ms, max rss \d+ KiB, read \d+ B, written \d+ B\n$/,
        );
        expect(await ok("node", ["out/get-pid.js", "--url", still.url, "--tgid", "301"], project)).toMatch(
          /^tgid 301 \S+, user /,
        );
        const gone = await run("node", ["out/get-pid.js", "--url", still.url, "299"], project);
        expect(gone).toMatchObject({ code: 1, out: "pid 299: no such live task\n" });
        // A server that is not there, or a refused request: one line naming it, no stack trace.
        const away = await run("node", ["out/get-pid.js", "--url", "http://127.0.0.1:1", "301"], project);
        expect(away.code).toBe(1);
        expect(away.err).toMatch(/^get-pid: http:\/\/127\.0\.0\.1:1: .*ECONNREFUSED.*\n$/);
        const bad = await run(
          "node",
          ["out/watch-exits.js", "--url", sim.url, "--cpus", "0-99999", "--count", "1"],
          project,
        );
        expect(bad.code).toBe(1);
        expect(bad.err).toMatch(/^watch-exits: http:.*: .*cpu/i);
        expect(bad.err).not.toMatch(/\n\s+at /);
      } finally {
        sim.stop();
        still.stop();
      }
    },
    120_000,
  );

  it.skipIf(missing !== undefined)(
    missing === undefined
      ? "taskwire serve --source netlink serves the real kernel (koffi installed as an optional dependency)"
      : `taskwire serve --source netlink SKIPPED: ${missing}`,
    async () => {
      const server = await spawnServer(taskwire, ["serve", "--source", "netlink", "--port", "0"], project);
      try {
        expect(server.runtime).toBe("node");
        const info = JSON.parse(await ok(taskwire, ["info", "--json", "--url", server.url], project));
        expect(info.source).toBe("netlink");
        // get-pid's default pid is its own, which the real kernel knows.
        await compileExamples();
        expect(await ok("node", ["out/get-pid.js", "--url", server.url], project)).toMatch(
          /^pid \d+ \S+, user \d+\.\d ms, /,
        );
      } finally {
        server.stop();
      }
    },
    60_000,
  );

  it.skipIf(process.platform !== "linux")(
    "without koffi, --source netlink says in one line to install it, and --source sim still serves",
    async () => {
      const koffi = join(project, "node_modules/koffi");
      renameSync(koffi, `${koffi}.away`);
      try {
        const r = await run(taskwire, ["serve", "--source", "netlink", "--port", "0"], project);
        expect(r.code).toBe(1);
        expect(lines(r.err)).toHaveLength(1);
        expect(r.err).toContain(
          "koffi, the optional dependency taskwire's kernel calls use on Node, is not installed: run `npm install koffi`",
        );
        expect(r.err).toContain("Run with --source sim");
        const server = await spawnServer(taskwire, ["serve", "--source", "sim", "--port", "0"], project);
        server.stop();
      } finally {
        renameSync(`${koffi}.away`, koffi);
      }
    },
    60_000,
  );

  it("bin/taskwire.js without dist/ says in one line to build", async () => {
    const bare = join(dir, "bare");
    mkdirSync(join(bare, "bin"), { recursive: true });
    copyFileSync(join(root, "bin/taskwire.js"), join(bare, "bin/taskwire.js"));
    writeFileSync(join(bare, "package.json"), JSON.stringify({ type: "module" }));
    const r = await run("node", [join(bare, "bin/taskwire.js"), "--help"], bare);
    expect(r).toMatchObject({
      code: 1,
      out: "",
      err: "taskwire is not built: run `npm run build` (or use `npx bun src/cli/run.ts`)\n",
    });
  });
});
