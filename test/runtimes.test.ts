/** The netlink source under Deno and Bun (npm devDependencies), spawned from vitest against the real kernel. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { openNetlinkSource } from "../src/sources/netlink/netlink-source.ts";
import { helperPath } from "./native.ts";

const root = new URL("..", import.meta.url).pathname;
const missing = await openNetlinkSource().then(async (s) => { await s.close(); return undefined; }, (e: Error) => e.message);
if (missing !== undefined && process.env["TASKWIRE_REQUIRE_NETLINK"] === "1") throw new Error(`TASKWIRE_REQUIRE_NETLINK=1 but ${missing}`);

// Deno grants reads of /sys and /proc (the possible CPUs, the delayacct sysctl) only with --allow-all.
const DENO_PERMS = ["--allow-all"];
const runtimes: [string, (script: string, args: string[]) => [string, string[]]][] = [
  ["deno", (script, args) => [`${root}node_modules/.bin/deno`, ["run", ...DENO_PERMS, script, ...args]]],
  ["bun", (script, args) => [`${root}node_modules/.bin/bun`, [script, ...args]]],
];

describe.skipIf(missing !== undefined)(missing === undefined ? "netlink source on Deno and Bun" : `netlink source on Deno and Bun SKIPPED: ${missing}`, () => {
  for (const [name, command] of runtimes) {
    it(`${name}: GET and a named child's exit record through ${name}'s FFI and worker`, async () => {
      const comm = `tw-${name}`;
      const [bin, args] = command(`${root}test/runtimes/netlink-smoke.ts`, [helperPath(), comm]);
      const { stdout } = await promisify(execFile)(bin, args, { cwd: root, timeout: 60_000 });
      const result = JSON.parse(stdout.trim().split("\n").pop()!);
      expect(result.runtime).toBe(name);
      expect(result.selfPid).toBe(true);
      expect(result.version).toBeGreaterThanOrEqual(1);
      expect(result.exit).toEqual({ pid: result.childPid, cpu: 0, comm, code: 5 << 8 });
    }, 90_000);
  }
});
