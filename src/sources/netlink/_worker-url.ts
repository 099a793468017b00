/**
 * Where the reader worker's code is. A compiled build runs the compiled
 * worker beside it; Deno and Bun run the TypeScript worker directly. Node
 * runs no TypeScript in workers, so when taskwire itself runs from its
 * TypeScript sources on Node (the tests, under vitest), the worker is
 * bundled from those same sources with rolldown (a devDependency) into
 * node_modules/.cache: a compiled dist/ is never used from sources, so a
 * stale build cannot stand in for the code under test.
 */
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The worker module's URL for the way this module is running. */
export async function readerWorkerUrl(): Promise<URL> {
  const self = import.meta.url;
  if (!self.endsWith(".ts")) return new URL("./reader-worker.js", self);
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  if (g.Deno !== undefined || g.Bun !== undefined) return new URL("./reader-worker.ts", self);
  return await bundleFromSources(new URL("./reader-worker.ts", self));
}

async function bundleFromSources(entry: URL): Promise<URL> {
  let build: typeof import("rolldown").build;
  try {
    ({ build } = await import("rolldown"));
  } catch (err) {
    throw new Error(
      `running taskwire's TypeScript sources on Node needs the devDependency rolldown to build the netlink reader worker (${
        (err as Error).message
      }); run \`npm ci\`, or run the compiled build (npm run build)`,
    );
  }
  const out = await build({
    input: fileURLToPath(entry),
    write: false,
    platform: "node",
    external: [/^node:/, "koffi"],
    logLevel: "silent",
    output: { format: "esm", codeSplitting: false },
  });
  // Inside the project's node_modules, so the bundle's one bare import (koffi) resolves as the sources' would.
  const dir = new URL("../../../node_modules/.cache/taskwire/", entry);
  mkdirSync(dir, { recursive: true });
  const code = out.output[0].code;
  // Named by content: runs of the same sources share one file, and a changed source never meets an old bundle.
  const file = new URL(`reader-worker-${createHash("sha256").update(code).digest("hex").slice(0, 16)}.mjs`, dir);
  writeFileSync(file, code);
  return file;
}
