/** `taskwire serve`: picks the source, starts the server, stops cleanly on SIGINT/SIGTERM. */
import { readFileSync } from "node:fs";
import { UsageError } from "./errors.ts";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { listen, runtimeLabel } from "../runtime/listen.ts";
import type { TransportLimits } from "../runtime/node.ts";
import { createServer } from "../server/server.ts";
import type { Share } from "../core/budget.ts";
import type { Limits } from "../core/registry.ts";
import type { TaskstatsSource } from "../sources/source.ts";
import { enableDelayacct } from "../sources/netlink/delayacct.ts";
import { NetlinkUnavailableError, openNetlinkSource } from "../sources/netlink/netlink-source.ts";
import { createSimSource } from "../sources/sim/sim-source.ts";
import { type Authenticator, createAuthenticator } from "../auth/authenticator.ts";
import { createHostCheck, isLoopbackAddress } from "../auth/hosts.ts";
import { AuthFileError } from "../auth/tokens.ts";
import { type AuthFlags, checkExposure } from "./serve-auth.ts";
import { CAP_NET_ADMIN, describeCapabilities, excessCapabilities, readCapabilities } from "../sys/capabilities.ts";

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
  /** Largest request message accepted (bytes). */
  maxMessageBytes: number;
  /** Connection and HTTP-level limits (Node). */
  transport: Partial<TransportLimits>;
  /** Offer gzip and brotli response compression. */
  compress: boolean;
  enableDelayacct: boolean;
  tlsCert?: string | undefined;
  corsOrigins: string[];
  tlsKey?: string | undefined;
  limits: Partial<Limits>;
  /** Bytes everything held per client may take (--memory-budget). */
  memoryBudget: number;
  /** Most of it one principal may hold (--memory-budget-per-principal). */
  memoryBudgetPerPrincipal: Share;
  auth: AuthFlags;
}

export { UsageError } from "./errors.ts";

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
function readTls(flags: ServeFlags): { cert: string; key: string; clientCa?: string } | undefined {
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
  const clientCa = flags.auth.tlsClientCa === undefined ? undefined : read(flags.auth.tlsClientCa, "client CA");
  return { cert: read(flags.tlsCert, "certificate"), key: read(flags.tlsKey, "key"), ...(clientCa && { clientCa }) };
}

function authenticatorFor(auth: AuthFlags): Authenticator {
  try {
    return createAuthenticator({
      tokenFile: auth.tokenFile,
      clientCertificates: auth.tlsClientCa === undefined ? undefined : { defaultRoles: auth.tlsClientRoles },
    });
  } catch (err) {
    if (err instanceof AuthFileError) throw new UsageError(`--token-file: ${err.message}`);
    throw err;
  }
}

// SIGHUP re-reads the auth file; a bad file keeps the tokens in force and says why.
function reloadOnHangup(authenticator: Authenticator, file: string | undefined): () => void {
  if (file === undefined) return () => {};
  const onHup = () => {
    try {
      authenticator.reload();
      console.error(`taskwire: SIGHUP: reloaded ${file}`);
    } catch (err) {
      console.error(`taskwire: SIGHUP: kept the previous tokens: ${(err as Error).message}`);
    }
  };
  process.on("SIGHUP", onHup);
  return () => process.off("SIGHUP", onHup);
}

function describeAuth(auth: AuthFlags): string {
  const ways = [
    ...(auth.tokenFile === undefined ? [] : [`bearer tokens from ${auth.tokenFile} (SIGHUP reloads)`]),
    ...(auth.tlsClientCa === undefined ? [] : [`client certificates signed by ${auth.tlsClientCa}`]),
  ];
  return ways.length === 0
    ? "authentication: none (every caller has every role)"
    : `authentication: ${ways.join(", ")}`;
}

/** Runs the server until SIGINT or SIGTERM, then shuts down cleanly. */
export async function serveCommand(flags: ServeFlags): Promise<void> {
  const tls = readTls(flags);
  const warnings = checkExposure({
    host: flags.host,
    auth: flags.auth,
    corsOrigins: flags.corsOrigins,
    tls: tls !== undefined,
  });
  const authenticator = authenticatorFor(flags.auth);
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
  const server = createServer({
    source,
    limits: flags.limits,
    memoryBudget: flags.memoryBudget,
    memoryBudgetPerPrincipal: flags.memoryBudgetPerPrincipal,
    corsOrigins: flags.corsOrigins,
    compression,
    maxMessageBytes: flags.maxMessageBytes,
    authenticator,
    admission: {
      maxStreams: flags.auth.maxStreams,
      maxStreamsPerPrincipal: flags.auth.maxStreamsPerPrincipal,
      callsPerSecond: flags.auth.maxCallsPerSecond,
      callBurst: 2 * flags.auth.maxCallsPerSecond,
    },
    ...(isLoopbackAddress(flags.host) && { hostAllowed: createHostCheck(flags.auth.allowedHosts) }),
  });
  const listening = await listen(server, {
    host: flags.host,
    port: flags.port,
    sendBuffer: flags.sendBuffer,
    ...flags.transport,
    ...(tls && { tls }),
  }).catch(async (err: unknown) => {
    await server.close();
    restoreDelayacct();
    throw err;
  });
  const info = source.info();
  const held = readCapabilities();
  const holding = process.platform === "linux" ? `, holding ${describeCapabilities(held)}` : "";
  console.error(
    `taskwire: serving ${info.source} source (${info.kernelRelease}, possible CPUs ${source.possible.list}) on ${listening.url} with ${runtimeLabel()}${holding}`,
  );
  const needed = info.source === "netlink" ? [CAP_NET_ADMIN] : [];
  const excess = excessCapabilities({ held, needed, euid: process.geteuid?.() });
  if (excess !== undefined) console.error(`taskwire: warning: ${excess}`);
  for (const w of warnings) console.error(`taskwire: warning: ${w}`);
  console.error(`taskwire: ${describeAuth(flags.auth)}`);
  const stopReloading = reloadOnHangup(authenticator, flags.auth.tokenFile);
  if (info.source === "sim") console.error("taskwire: data is SIMULATED (--source sim); GetInfo reports source=sim");
  else if (!info.delayacct && !flags.enableDelayacct) {
    console.error("taskwire: kernel.task_delayacct is 0, so delay fields are zero; --enable-delayacct turns it on");
  }
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      console.error(`taskwire: ${sig}, shutting down`);
      stopReloading();
      listening.close().finally(() => {
        restoreDelayacct();
        resolve();
      });
    };
    process.once("SIGINT", () => stop("SIGINT"));
    process.once("SIGTERM", () => stop("SIGTERM"));
  });
}
