#!/usr/bin/env node
// Node runs the compiled CLI (npm run build; the published package ships it).
// Deno and Bun run src/cli/run.ts directly.
import { existsSync } from "node:fs";

const entry = new URL("../dist/src/cli/main.js", import.meta.url);
if (!existsSync(entry)) {
  console.error("taskwire is not built: run `npm run build` (or use `npx bun src/cli/run.ts`)");
  process.exit(1);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
