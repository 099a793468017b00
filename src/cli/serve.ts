/** `taskwire serve`: picks the source, starts the server, stops cleanly on SIGINT/SIGTERM. */
import { readFileSync } from "node:fs";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { listen, runtimeLabel } from "../runtime/listen.ts";
import { createServer } from "../server/server.ts";
import type { Limits } from "../core/registry.ts";
import type { TaskstatsSource } from "../sources/source.ts";
import { enableDelayacct } from "../sources/netlink/delayacct.ts";
import { NetlinkUnavailableError, openNetlinkSource } from "../sources/netlink/netlink-source.ts";
import { createSimSource } from "../sources/sim/sim-source.ts";

/** Parsed `serve` flags. */
export interface ServeFlags {
  source: "auto" | "netlink" | "sim";
  host: string;
  port: number;
  simCpus: number;
  simExitRate: number;
  simSeed: number;
  socketBuffer: number;
  /** Kernel send buffer per client connection (bytes; 0 = autotuning). */
  sendBuffer: number;
  /** Offer gzip and brotli response compression. */
  compress: boolean;
  enableDelayacct: boolean;
  tlsCert?: string | undefined;
  corsOrigins: string[];
  tlsKey?: string | undefined;
  limits: Partial<Limits>;
}

/** A usage problem the CLI reports without a stack, exiting 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

async function openSource(flags: ServeFlags): Promise<TaskstatsSource> {
  if (flags.source === "sim") {
    return createSimSource({ cpus: flags.simCpus, exitRate: flags.simExitRate, seed: flags.simSeed });
  }
  try {
    return await openNetlinkSource({ socketBuffer: flags.socketBuffer });
  } catch (err) {
    // Never fall back to simulated data silently: say why and how to ask for it.
    if (err instanceof NetlinkUnavailableError) throw new SourceError(`--source ${flags.source}: ${err.message}`);
    throw err;
  }
}

/** The chosen source cannot run here; the CLI exits 1 with this message. */
export class SourceError extends Error {
  override readonly name = "SourceError";
}

/** Runs the server until a signal arrives. */
function readTls(flags: ServeFlags): { cert: string; key: string } | undefined {
  if (flags.tlsCert === undefined && flags.tlsKey === undefined) return undefined;
  if (flags.tlsCert === undefined || flags.tlsKey === undefined) {
    throw new UsageError("--tls-cert and --tls-key go together: pass both PEM files");
  }
  const read = (file: string, what: string) => {
    try {
      return readFileSync(file, "utf8");
    } catch (err) {
      throw new UsageError(`cannot read the TLS ${what} ${file}: ${(err as Error).message}`);
    }
  };
  return { cert: read(flags.tlsCert, "certificate"), key: read(flags.tlsKey, "key") };
}

/** Runs the server until SIGINT or SIGTERM, then shuts down cleanly. */
export async function serveCommand(flags: ServeFlags): Promise<void> {
  const tls = readTls(flags);
  if (flags.enableDelayacct && flags.source === "sim") {
    throw new UsageError("--enable-delayacct changes the real kernel's sysctl; it has no meaning with --source sim");
  }
  const source = await openSource(flags);
  let restoreDelayacct = (): void => {};
  if (flags.enableDelayacct) {
    const d = enableDelayacct();
    restoreDelayacct = d.restore;
    console.error(
      d.was
        ? "taskwire: kernel.task_delayacct was already 1"
        : "taskwire: kernel.task_delayacct set to 1 (restored on exit); tasks started before now keep zero delay fields",
    );
  }
  const compression = flags.compress ? [compressionGzip, compressionBrotli] : [];
  const server = createServer({ source, limits: flags.limits, corsOrigins: flags.corsOrigins, compression });
  const listening = await listen(server, {
    host: flags.host,
    port: flags.port,
    sendBuffer: flags.sendBuffer,
    ...(tls && { tls }),
  }).catch(async (err: unknown) => {
    await server.close();
    restoreDelayacct();
    throw err;
  });
  const info = source.info();
  console.error(
    `taskwire: serving ${info.source} source (${info.kernelRelease}, possible CPUs ${source.possible.list}) on ${listening.url} with ${runtimeLabel()}`,
  );
  if (info.source === "sim") console.error("taskwire: data is SIMULATED (--source sim); GetInfo reports source=sim");
  else if (!info.delayacct && !flags.enableDelayacct) {
    console.error("taskwire: kernel.task_delayacct is 0, so delay fields are zero; --enable-delayacct turns it on");
  }
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      console.error(`taskwire: ${sig}, shutting down`);
      listening.close().finally(() => {
        restoreDelayacct();
        resolve();
      });
    };
    process.once("SIGINT", () => stop("SIGINT"));
    process.once("SIGTERM", () => stop("SIGTERM"));
  });
}
