/** `taskwire serve`: picks the source, starts the server, stops cleanly on SIGINT/SIGTERM. */
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { DEFAULT_HEAP_HEADROOM_BYTES, keepHeapHeadroom, listen, runtimeLabel } from "../runtime/listen.ts";
import type { TransportLimits } from "../runtime/node.ts";
import { createServer } from "../server/server.ts";
import type { Share } from "../core/budget.ts";
import type { Limits } from "../core/limits.ts";
import type { CgroupCallLimits } from "../rpc/cgroup-stats.ts";
import type { TaskstatsSource } from "../sources/source.ts";
import { hostname } from "node:os";
import { enableDelayacct } from "../sources/netlink/delayacct.ts";
import { networkNamespaceOfInit } from "../sys/namespaces.ts";
import { glibcVersion, mallocPagesLine, thpMode } from "../sys/malloc-pages.ts";
import { NetlinkUnavailableError, openNetlinkSource } from "../sources/netlink/netlink-source.ts";
import { createSimSource } from "../sources/sim/sim-source.ts";
import type { Authenticator } from "../auth/authenticator.ts";
import { createHostCheck, isLoopbackAddress } from "../auth/hosts.ts";
import type { AuthFlags } from "./serve-auth.ts";
import { checkServe } from "./serve-checks.ts";
import { CAP_NET_ADMIN, describeCapabilities, excessCapabilities, readCapabilities } from "../sys/capabilities.ts";
import type { Logger } from "@logtape/logtape";
import { configureLogging, logText } from "../log/logger.ts";
import type { LogFlags } from "./serve-log.ts";
import { type FleetOptions, redactUrl } from "../fleet/publisher.ts";
import { openFleet } from "./serve-nats.ts";
import { parse as parseToml, stringify as stringifyToml } from "smol-toml";

/** Parsed `serve` flags. */
export interface ServeFlags {
  source: "auto" | "netlink" | "sim";
  host: string;
  port: number;
  simCpus: number;
  simExitRate: number;
  simSeed: number;
  socketBuffer: number;
  /** How long the netlink reader may hold records before handing them on. */
  netlinkBatchWindowMs?: number;
  /** Most threads counted from /proc per cgroup v2 directory (--cgroup-max-threads). */
  cgroupMaxThreads?: number;
  /** GetCgroupStats counts in flight (--cgroup-max-concurrent) and their time limit (--cgroup-timeout). */
  cgroupCalls?: Partial<CgroupCallLimits>;
  /** Kernel send buffer per client connection (bytes; 0 = autotuning). */
  sendBuffer: number;
  /** Room kept in V8's old generation above the live heap (bytes; 0 = V8's own sizing; Node only; --heap-headroom-mb). */
  heapHeadroom?: number;
  /** Largest request message accepted (bytes). */
  maxMessageBytes: number;
  /** Connection and HTTP-level limits (Node). */
  transport: Partial<TransportLimits>;
  /** Offer gzip and brotli response compression. */
  compress: boolean;
  /** Serve /metrics (--no-metrics: false); default true. */
  metrics?: boolean;
  enableDelayacct: boolean;
  tlsCert?: string | undefined;
  corsOrigins: string[];
  tlsKey?: string | undefined;
  /** The settings given with a value other than their default, by long name: one that would do nothing is refused. */
  given: readonly string[];
  limits: Partial<Limits>;
  /** Bytes everything held per client may take (--memory-budget). */
  memoryBudget: number;
  /** Most of it one principal may hold (--memory-budget-per-principal). */
  memoryBudgetPerPrincipal: Share;
  auth: AuthFlags;
  /** --log-level, --log-format, --no-access-log, --access-log-rate. */
  log: LogFlags;
  /** Warnings about the configuration itself (unknown TASKWIRE_ variables), logged once logging is set up. */
  configWarnings?: readonly string[];
  /** --nats and --nats-*: publish exits to NATS JetStream; undefined without --nats. */
  fleet?: FleetOptions | undefined;
}

export { UsageError } from "./errors.ts";

async function openSource(flags: ServeFlags): Promise<TaskstatsSource> {
  if (flags.source === "sim") {
    return createSimSource({ cpus: flags.simCpus, exitRate: flags.simExitRate, seed: flags.simSeed });
  }
  try {
    return await openNetlinkSource({
      socketBuffer: flags.socketBuffer,
      ...(flags.netlinkBatchWindowMs !== undefined && { batchWindowMs: flags.netlinkBatchWindowMs }),
      ...(flags.cgroupMaxThreads !== undefined && { cgroupMaxThreads: flags.cgroupMaxThreads }),
    });
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

// SIGHUP re-reads the auth file; a bad file keeps the tokens in force and says why. It is handled even
// with no file: a service manager's reload (systemctl reload) must not kill the server, which is what
// SIGHUP's default action does.
function reloadOnHangup(authenticator: Authenticator, auth: AuthFlags, logger: Logger): () => void {
  const file = auth.tokenFile;
  const onHup = () => {
    if (file === undefined) return logText(logger, "info", "SIGHUP: nothing to reload (no --token-file)");
    try {
      authenticator.reload();
      logText(logger, "info", `SIGHUP: reloaded ${file}`);
      warnIfNoTokens(authenticator, auth, logger);
    } catch (err) {
      logText(logger, "warning", `SIGHUP: kept the previous tokens: ${(err as Error).message}`);
    }
  };
  process.on("SIGHUP", onHup);
  return () => process.off("SIGHUP", onHup);
}

// An auth file without tokens (and no client certificates) admits nobody: legal (tokens can be added and the
// server sent SIGHUP), but more often a mistake, so it is said.
function warnIfNoTokens(authenticator: Authenticator, auth: AuthFlags, logger: Logger): void {
  const file = auth.tokenFile;
  if (file === undefined || authenticator.tokens !== 0 || auth.tlsClientCa !== undefined) return;
  logText(
    logger,
    "warning",
    `${file} holds no tokens: no caller can authenticate until one is added (taskwire token --principal NAME) and the server is sent SIGHUP`,
  );
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

// The DNS-rebinding guard is needed wherever the address is the only protection: a loopback bind, and any
// bind without authentication (0.0.0.0 with --allow-unauthenticated is reachable from a browser on the LAN).
function hostCheckNeeded(flags: ServeFlags): boolean {
  const authOn = flags.auth.tokenFile !== undefined || flags.auth.tlsClientCa !== undefined;
  return isLoopbackAddress(flags.host) || !authOn;
}

/**
 * --print-config: the settings in effect (`text`), after the checks a real
 * start makes of them, so a configuration it prints is one that starts (or
 * it fails as the start would). Warnings go to stderr.
 */
export function printConfig(text: string, flags: ServeFlags): void {
  const warn = (w: string) => process.stderr.write(`taskwire: warning: ${w}\n`);
  // The configuration's own warnings first (an unknown TASKWIRE_ variable may be why a check fails).
  for (const w of [...(flags.configWarnings ?? []), ..._natsWarnings(flags)]) warn(w);
  for (const w of checkServe(flags).warnings) warn(w);
  const shown = text.split("\n").map(withoutNatsPassword).join("\n");
  if (shown !== text) warn("a --nats URL's user:password is printed as ***: this output does not carry them");
  process.stdout.write(shown);
}

// The `nats = "..."` line of effectiveConfig's output with each URL's user:password as *** (the only setting that
// may hold a secret: every other one names a file). Read as TOML, so no quote or escape in a password is missed.
function withoutNatsPassword(line: string): string {
  if (!line.startsWith("nats = ")) return line;
  const comment = line.lastIndexOf("   # "); // effectiveConfig's, after the value (a value may hold one too)
  let urls: string;
  try {
    urls = String((parseToml(comment < 0 ? line : line.slice(0, comment)) as { nats: unknown }).nats);
  } catch {
    return `nats = "***"   # could not be shown`; // never the value, nor a parser's error that quotes it
  }
  if (!urls.includes("@")) return line;
  // Each URL (checkServe has refused a list whose parts are not URLs, as a comma in a password makes).
  const redacted = urls.split(",").map((u) => (u.includes("@") ? redactUrl(u.trim()) : u)).join(",");
  return `${stringifyToml({ nats: redacted }).trim()}${comment < 0 ? "" : line.slice(comment)}`;
}

/** Runs the server until SIGINT or SIGTERM, then shuts down cleanly. */
export async function serveCommand(flags: ServeFlags): Promise<void> {
  const logger = configureLogging({ level: flags.log.level, format: flags.log.format });
  for (const w of [...(flags.configWarnings ?? []), ..._natsWarnings(flags)]) logText(logger, "warning", w);
  // First: a bad value is refused before anything is opened.
  const { tls, authenticator, warnings } = checkServe(flags);
  const headroom = flags.heapHeadroom ?? DEFAULT_HEAP_HEADROOM_BYTES;
  const heap = await keepHeapHeadroom(headroom);
  // From the start, not once serving: a reload that comes early must not kill the server either.
  const stopReloading = reloadOnHangup(authenticator, flags.auth, logger);
  const source = await openSource(flags);
  let restoreDelayacct = (): void => {};
  if (flags.enableDelayacct) {
    const d = enableDelayacct();
    restoreDelayacct = d.restore;
    logText(
      logger,
      "info",
      d.was
        ? "kernel.task_delayacct was already 1"
        : "kernel.task_delayacct set to 1 (restored on exit); tasks started before now keep zero delay fields",
    );
  }
  const fleet = await openFleet(flags.fleet, (level, text) => logText(logger, level, text)).catch(async (err) => {
    await source.close();
    restoreDelayacct();
    throw err;
  });
  const compression = flags.compress ? [compressionGzip, compressionBrotli] : [];
  const server = createServer({
    source,
    limits: flags.limits,
    memoryBudget: flags.memoryBudget,
    memoryBudgetPerPrincipal: flags.memoryBudgetPerPrincipal,
    corsOrigins: flags.corsOrigins,
    compression,
    maxMessageBytes: flags.maxMessageBytes,
    ...(fleet && { fleet }),
    ...(flags.cgroupCalls && { cgroupCalls: flags.cgroupCalls }),
    authenticator,
    logger,
    accessLog: flags.log.accessLog && { linesPerSecond: flags.log.accessLogRate },
    metrics: flags.metrics !== false,
    admission: {
      maxStreams: flags.auth.maxStreams,
      maxStreamsPerPrincipal: flags.auth.maxStreamsPerPrincipal,
      callsPerSecond: flags.auth.maxCallsPerSecond,
      callBurst: 2 * flags.auth.maxCallsPerSecond,
      maxCalls: flags.auth.maxCallsInFlight,
      maxCallsPerPrincipal: flags.auth.maxCallsInFlightPerPrincipal,
    },
    ...(hostCheckNeeded(flags) && {
      hostAllowed: createHostCheck(flags.auth.allowedHosts, { bind: flags.host }),
    }),
  });
  const listening = await listen(server, {
    host: flags.host,
    port: flags.port,
    sendBuffer: flags.sendBuffer,
    ...flags.transport,
    ...(tls && { tls }),
    logger,
  }).catch(async (err: unknown) => {
    await server.close();
    restoreDelayacct();
    throw err;
  });
  const info = source.info();
  const held = readCapabilities();
  const holding = process.platform === "linux" ? `, holding ${describeCapabilities(held)}` : "";
  logText(
    logger,
    "info",
    `serving ${info.source} source (${info.kernelRelease}, possible CPUs ${source.possible.list}) on ${listening.url} with ${runtimeLabel()}${holding}`,
  );
  const reach = _reachableUrl(listening.url);
  if (reach !== undefined) logText(logger, "info", reach);
  const needed = info.source === "netlink" ? [CAP_NET_ADMIN] : [];
  const excess = excessCapabilities({ held, needed, euid: process.geteuid?.() });
  if (excess !== undefined) logText(logger, "warning", excess);
  for (const w of warnings) logText(logger, "warning", w);
  if (info.source === "netlink" && networkNamespaceOfInit() === "different") {
    logText(
      logger,
      "warning",
      "this process is not in the initial network namespace (pid 1's): the kernel sends exit records only to listeners there, so GetPid works but no exit will ever arrive; run in the host's network namespace (containers: --net=host; systemd: no PrivateNetwork=)",
    );
  }
  logText(
    logger,
    "info",
    heap.applied
      ? `V8 heap: ${headroom / 1024 ** 2} MiB kept free above live data (--heap-headroom-mb)`
      : `V8 heap: --heap-headroom-mb not applied (${heap.why})`,
  );
  // Node and Deno allocate ArrayBuffers with glibc's malloc; Bun has an allocator of its own.
  const malloc = runtimeLabel().startsWith("bun")
    ? undefined
    : mallocPagesLine(process.env["GLIBC_TUNABLES"], thpMode(), { glibc: glibcVersion() });
  if (malloc !== undefined) logText(logger, "info", malloc);
  logText(logger, "info", describeAuth(flags.auth));
  warnIfNoTokens(authenticator, flags.auth, logger);
  if (info.source === "sim") logText(logger, "info", "data is SIMULATED (--source sim); GetInfo reports source=sim");
  else if (!info.delayacct && !flags.enableDelayacct) {
    logText(
      logger,
      "info",
      "kernel.task_delayacct is 0: block I/O, swap-in, reclaim, thrashing, compaction, write-protect-copy and IRQ delays are zero (CPU delay is filled regardless, by sched_info); --enable-delayacct turns them on",
    );
  }
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      logText(logger, "info", `${sig}, shutting down`);
      stopReloading();
      listening.close().finally(() => {
        heap.undo();
        restoreDelayacct();
        resolve();
      });
    };
    process.once("SIGINT", () => stop("SIGINT"));
    process.once("SIGTERM", () => stop("SIGTERM"));
  });
}

// A wildcard bind's URL (0.0.0.0, [::]) is no address a client can use, and the Host check refuses it:
// name one that works (this machine's hostname, which the Host check allows).
function _reachableUrl(url: string): string | undefined {
  const u = new URL(url);
  if (u.hostname !== "0.0.0.0" && u.hostname !== "[::]") return undefined;
  return `${u.hostname} is every address, not one to connect to: clients use this machine's name or an address, e.g. ${u.protocol}//${hostname()}:${u.port}`;
}

// A password in --nats is on the command line (or in the config/env), visible to every local user in ps.
function _natsWarnings(flags: ServeFlags): string[] {
  const servers = flags.fleet?.servers;
  const list = servers === undefined ? [] : typeof servers === "string" ? servers.split(",") : [...servers];
  return list.some((u) => u.includes("@"))
    ? [
      "--nats carries credentials in its URL: on the command line every local user can read them (ps, /proc), and logs and --print-config show the URL redacted; keep them in a file of their own: --nats-creds, --nats-nkey or --nats-token-file",
    ]
    : [];
}
