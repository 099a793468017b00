/** Entry point for runtimes that execute TypeScript directly (Deno, Bun). */
import { main } from "./main.ts";
process.exitCode = await main(process.argv.slice(2));
