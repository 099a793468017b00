/** `taskwire serve`: picks the source, starts the server, stops cleanly on SIGINT/SIGTERM. */
import { listenNode } from "../server/listen-node.ts";
import { createServer } from "../server/server.ts";
import type { Limits } from "../service/registry.ts";
import type { TaskstatsSource } from "../sources/source.ts";
import { createSimSource } from "../sources/sim/sim-source.ts";

/** Parsed `serve` flags. */
export interface ServeFlags {
  source: "auto" | "netlink" | "sim";
  host: string;
  port: number;
  simCpus: number;
  simExitRate: number;
  simSeed: number;
  limits: Partial<Limits>;
}

/** A usage problem the CLI reports without a stack, exiting 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

async function openSource(flags: ServeFlags): Promise<TaskstatsSource> {
  if (flags.source === "sim") return createSimSource({ cpus: flags.simCpus, exitRate: flags.simExitRate, seed: flags.simSeed });
  throw new UsageError(
    `--source ${flags.source}: the netlink source (the real kernel) is not built in taskwire yet; ` +
      "only the simulated kernel is available. Run: taskwire serve --source sim",
  );
}

/** Runs the server until a signal arrives. */
export async function serveCommand(flags: ServeFlags): Promise<void> {
  const source = await openSource(flags);
  const server = createServer({ source, limits: flags.limits });
  const listening = await listenNode(server, { host: flags.host, port: flags.port }).catch(async (err: unknown) => {
    await server.close();
    throw err;
  });
  const info = source.info();
  console.error(`taskwire: serving ${info.source} source (${info.kernelRelease}, possible CPUs ${source.possible.list}) on ${listening.url}`);
  if (info.source === "sim") console.error("taskwire: data is SIMULATED (--source sim); GetInfo reports source=sim");
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      console.error(`taskwire: ${sig}, shutting down`);
      listening.close().then(resolve, resolve);
    };
    process.once("SIGINT", () => stop("SIGINT"));
    process.once("SIGTERM", () => stop("SIGTERM"));
  });
}
