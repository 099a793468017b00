/**
 * `npm run bench`: prints each benchmark's table. Figures are measured in one
 * run beside their baselines, since absolute times wander on shared machines.
 */
import { benchDispatch } from "./dispatch.ts";
import { benchNetlinkIngest } from "./netlink-ingest.ts";

function table(title: string, rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [`## ${title}`, "", ...rows.map(line)].join("\n");
}

const only = process.argv[2];
const benches: [string, () => Promise<string[][]>][] = [
  ["dispatch on a 4,096-CPU sim: per-CPU listener table vs scanning every listener", async () => benchDispatch()],
  ["netlink ingest during a thread-exit storm", () => benchNetlinkIngest({ threads: Number(process.env["BENCH_THREADS"] ?? 200_000) })],
];
for (const [title, run] of benches) {
  if (only !== undefined && !title.includes(only)) continue;
  try {
    console.log(table(title, await run()) + "\n");
  } catch (err) {
    console.log(`## ${title}\n\nnot run: ${(err as Error).message}\n`);
  }
}
