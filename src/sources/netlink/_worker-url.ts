/**
 * Where the reader worker's code is. A compiled build runs the compiled
 * worker beside it; Deno and Bun run the TypeScript worker directly. Node
 * runs no TypeScript in workers, so when taskwire itself runs from its
 * TypeScript sources on Node (the tests, under vitest), the worker is
 * bundled from those same sources with rolldown (a devDependency) and run
 * from a data: URL: a compiled dist/ is never used from sources, so a stale
 * build cannot stand in for the code under test, and nothing is written to
 * disk, so a server running as an unprivileged user (who may not write the
 * checkout's node_modules) bundles its worker like root does.
 */
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
  // A data: URL module resolves no bare specifier, so the bundle's one bare import (koffi)
  // becomes the file URL the sources' own import resolves to. The caller loaded koffi already.
  const koffi = import.meta.resolve("koffi");
  const out = await build({
    input: fileURLToPath(entry),
    write: false,
    platform: "node",
    external: [/^node:/, "koffi"],
    logLevel: "silent",
    output: { format: "esm", codeSplitting: false, paths: { koffi } },
  });
  // Stack traces name the worker by this sourceURL rather than by the whole data: URL.
  const code = `${out.output[0].code}\n//# sourceURL=${new URL("./reader-worker.bundle.mjs", entry).href}\n`;
  return new URL(`data:text/javascript;base64,${Buffer.from(code).toString("base64")}`);
}
