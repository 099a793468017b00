/**
 * `npm run bench [name]`: prints each benchmark's tables (names: dispatch,
 * e2e, latency, server-path, netlink, auth, observability, fleet, accounting, resets). Figures are measured in one run beside their baselines,
 * since absolute times wander on shared machines.
 */
import { benchAccounting, benchSettle } from "./accounting.ts";
import { benchAuth } from "./auth.ts";
import { benchDispatch } from "./dispatch.ts";
import { benchE2e } from "./e2e.ts";
import { benchFleet } from "./fleet.ts";
import { benchLatency } from "./latency.ts";
import { benchNetlinkIngest } from "./netlink-ingest.ts";
import { benchNetlinkSteady } from "./netlink-steady.ts";
import { benchObservability } from "./observability.ts";
import { benchResets } from "./resets.ts";
import { benchServerPath } from "./server-path.ts";
import { keepBenchHeapHeadroom } from "./_heap.ts";

type Tables = [title: string, rows: string[][]][];

function table(title: string, rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => `| ${r.map((c, i) => (c ?? "").padEnd(widths[i]!)).join(" | ")} |`;
  const rule = `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`;
  return [`## ${title}`, "", line(rows[0]!), rule, ...rows.slice(1).map(line)].join("\n");
}

const benches: [name: string, run: () => Promise<Tables>][] = [
  [
    "dispatch",
    async () => [["dispatch on a 4,096-CPU sim: per-CPU listener table vs scanning every listener", benchDispatch()]],
  ],
  ["e2e", () => benchE2e(Number(process.env["BENCH_WINDOW_MS"] ?? 3000))],
  [
    "latency",
    async () => {
      const { rows, paths } = await benchLatency({
        rounds: Number(process.env["BENCH_ROUNDS"] ?? 3),
        windowMs: Number(process.env["BENCH_WINDOW_MS"] ?? 2000),
        // BENCH_SCHED_TRACE=1 (root): taskwire's and the bare Connect server's rows traced, and where their time went.
        schedTrace: process.env["BENCH_SCHED_TRACE"] === "1",
      });
      const tables: Tables = [["latency: produced -> received by a client process (same clock)", rows]];
      if (paths !== undefined) {
        tables.push([
          "latency, traced: where each event's time went (the scheduler's trace)",
          paths,
        ]);
      }
      return tables;
    },
  ],
  [
    "server-path",
    async () => [[
      "server path: a write's earliest stamp -> the write on the client's socket, inside the server's process",
      await benchServerPath({
        rounds: Number(process.env["BENCH_ROUNDS"] ?? 4),
        windowMs: Number(process.env["BENCH_WINDOW_MS"] ?? 3000),
        perSecond: Number(process.env["BENCH_RATE"] ?? 10_000),
      }),
    ]],
  ],
  [
    "netlink",
    async () => [[
      "netlink ingest during a thread-exit storm (real kernel)",
      await benchNetlinkIngest({ threads: Number(process.env["BENCH_THREADS"] ?? 200_000) }),
    ], [
      "netlink ingest between storms: steady rates and idle (real kernel)",
      await benchNetlinkSteady({
        rates: (process.env["BENCH_STEADY_RATES"] ?? "100,1000").split(",").map(Number),
        seconds: Number(process.env["BENCH_STEADY_SECONDS"] ?? 10),
        rounds: Number(process.env["BENCH_ROUNDS"] ?? 1),
      }),
    ]],
  ],
  [
    "auth",
    async () => [[
      "authentication: the same server without and with bearer tokens, alternating rounds",
      await benchAuth({
        rounds: Number(process.env["BENCH_ROUNDS"] ?? 3),
        windowMs: Number(process.env["BENCH_WINDOW_MS"] ?? 3000),
      }),
    ]],
  ],
  [
    "observability",
    async () => [[
      "observability: the same server with metrics and the access log off and on, alternating rounds (overhead: against off)",
      await benchObservability({
        rounds: Number(process.env["BENCH_ROUNDS"] ?? 5),
        windowMs: Number(process.env["BENCH_WINDOW_MS"] ?? 3000),
      }),
    ]],
  ],
];

benches.push([
  "accounting",
  async () => [
    [
      "memory accounting: what a listener holds against what it is charged, by the pattern its filter matches",
      await benchAccounting(),
    ],
    ["memory accounting: what the slab ledger's count takes, once a second", await benchSettle()],
  ],
]);

benches.push([
  "fleet",
  () =>
    benchFleet({
      windowMs: Number(process.env["BENCH_WINDOW_MS"] ?? 3000),
      rate: Number(process.env["BENCH_RATE"] ?? 20_000),
      rounds: Number(process.env["BENCH_ROUNDS"] ?? 2),
    }),
]);

benches.push([
  "resets",
  async () => [[
    "HTTP/2 rapid reset from loopback: /healthz on a kept connection beside each attack (a fresh server per row)",
    await benchResets(Number(process.env["BENCH_ROUNDS"] ?? 1)),
  ]],
]);

const only = process.argv[2];

// package.json's bench script runs every process of the bench (servers, clients, the C listeners) with the glibc
// tunables `npm start` and deploy/ give the server: the malloc heap in transparent huge pages.
function mallocTunables(): string {
  const t = process.env["GLIBC_TUNABLES"];
  return t === undefined || t === "" ? "with glibc's defaults (GLIBC_TUNABLES unset)" : `GLIBC_TUNABLES=${t}`;
}
// The servers run in this process: its heap is kept as `taskwire serve` keeps its own.
const heap = await keepBenchHeapHeadroom();
console.log(
  `# taskwire benchmarks\n\nnode ${process.version}, ${
    new Date().toISOString().slice(0, 10)
  }; run with \`npm run bench\`; V8 old-generation headroom ${
    heap.applied ? `${heap.mib} MiB` : "V8's own"
  }; malloc ${mallocTunables()}.\n`,
);
for (const [name, run] of benches) {
  if (only !== undefined && only !== name) continue;
  try {
    for (const [title, rows] of await run()) console.log(table(title, rows) + "\n");
  } catch (err) {
    console.log(`## ${name}\n\nnot run: ${(err as Error).message}\n`);
  }
}
process.exit(0);
