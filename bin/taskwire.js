#!/usr/bin/env node
// Node runs the compiled CLI (npm run build); Deno and Bun run src/cli/run.ts directly.
import { main } from "../dist/src/cli/main.js";
process.exitCode = await main(process.argv.slice(2));
