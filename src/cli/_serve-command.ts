/**
 * The `serve` command: its options (with the auth, log, NATS and config ones
 * their modules add) and the flags they make for serve.ts.
 */
import { type Command, InvalidArgumentError, Option } from "commander";
import { DEFAULT_LIMITS, LIMIT_RANGES } from "../core/limits.ts";
import { MAX_SIM_EXIT_RATE } from "../sources/sim/sim-source.ts";
import type { Share } from "../core/budget.ts";
import { formatBytes, parseBytes, parseShare } from "../core/byte-counts.ts";
import { defaultMemoryBudget } from "../server/memory.ts";
import { DEFAULT_BATCH_WINDOW_MS, DEFAULT_SOCKET_BUFFER } from "../sources/netlink/netlink-source.ts";
import { DEFAULT_CGROUP_MAX_THREADS } from "../sources/cgroup/procfs-counts.ts";
import { DEFAULT_CGROUP_CALLS } from "../rpc/cgroup-stats.ts";
import { DEFAULT_SEND_BUFFER, DEFAULT_TRANSPORT_LIMITS as TRANSPORT } from "../runtime/node.ts";
import { DEFAULT_HEAP_HEADROOM_BYTES } from "../runtime/listen.ts";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../server/message-limit.ts";
import { bytesArg, intArg } from "./options.ts";
import { addAuthOptions, authFlagsFrom } from "./serve-auth.ts";
import { addConfigOptions, effectiveConfig } from "./config.ts";
import { overriddenEnv, unknownEnv } from "./env-warnings.ts";
import { addLogOptions, logFlagsFrom } from "./serve-log.ts";
import { addNatsOptions, natsFlagsFrom } from "./serve-nats.ts";
import { printConfig, serveCommand, type ServeFlags } from "./serve.ts";

const int = intArg;

function rate(value: string, max: number): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < 0 || n > max) {
    throw new InvalidArgumentError(`expected a number from 0 to ${max}`);
  }
  return n;
}

// A parser for commander that reports a bad value as a usage error.
function cliArg<T>(parse: (text: string) => T) {
  return (value: string): T => {
    try {
      return parse(value);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

// The default is derived from this machine; --help shows it and how.
function memoryBudgetOption(): Option {
  const d = defaultMemoryBudget();
  return new Option(
    "--memory-budget <bytes>",
    "bytes everything held per client may take (queued and retained events, in-flight batches, listeners), e.g. 512MiB, at least 1MiB; past it exits are dropped with loss markers and new listeners are refused. Its last eighth is kept for principals holding less than their slice of it (that eighth over the principals holding any), and a principal under its fair share (seven eighths over the principals) takes room from those holding most over theirs, who drop their oldest exits (past it, it may borrow what principals holding less leave, where such drops make the room): principals whose streams never read, alone or together, cannot starve one that keeps up (a principal alone can use seven eighths). Past it, streams of principals over their fair share that hold a batch their clients have not taken for --lease-ms are dropped",
  ).argParser(cliArg(memoryBudget)).default(d.bytes, `${formatBytes(d.bytes)}: ${d.why}`);
}

/** The least --memory-budget taken: below it a server refuses every listener (one takes tens of KiB to hold). */
const MIN_MEMORY_BUDGET = 1024 * 1024;

function memoryBudget(text: string): number {
  const bytes = parseBytes(text);
  if (bytes < MIN_MEMORY_BUDGET) {
    throw new RangeError(
      `${bytes} bytes is too small to hold a listener and its batches; use at least 1MiB (the default fits this machine)`,
    );
  }
  return bytes;
}

// The settings given (a flag, a variable or a config key) with a value other than their default, by long name.
function givenSettings(serve: Command): string[] {
  return serve.options.flatMap((option) => {
    const attribute = option.attributeName();
    const source = serve.getOptionValueSource(attribute);
    const given = source !== undefined && source !== "default" &&
      serve.getOptionValue(attribute) !== option.defaultValue;
    return given && option.long !== undefined ? [option.long] : [];
  });
}

/** Adds `serve` to `program`; returns it. */
export function addServeCommand(program: Command): Command {
  const serve = program.command("serve")
    .description("run the server")
    .addOption(
      new Option(
        "--source <source>",
        "where stats come from: the real kernel (netlink), the simulated kernel (sim), or auto",
      ).choices(["auto", "netlink", "sim"]).default("auto"),
    )
    .option("--host <host>", "address to bind (127.0.0.1 keeps it local; 0.0.0.0 exposes it)", "127.0.0.1")
    .option("--port <port>", "TCP port (0 picks a free one)", int(0, 65535), 7878)
    .option("--sim-cpus <n>", "simulated possible CPUs", int(1, 65536), 8)
    .option(
      "--sim-exit-rate <r>",
      `simulated task exits per second, at most ${MAX_SIM_EXIT_RATE}`,
      cliArg((v) => rate(v, MAX_SIM_EXIT_RATE)),
      200,
    )
    .option("--sim-seed <s>", "simulation seed (same seed, same tasks)", int(0, 2 ** 32 - 1), 1)
    .option("--cors-origin <origins>", 'comma-separated browser origins allowed to call the API ("*" for any)')
    .option("--tls-cert <file>", "serve HTTPS (h2 and HTTP/1.1 by ALPN) with this PEM certificate chain")
    .option("--tls-key <file>", "the PEM private key for --tls-cert")
    .option(
      "--socket-buffer <bytes>",
      "netlink receive buffer per watched CPU (SO_RCVBUFFORCE as root)",
      bytesArg(4096, 2 ** 31 - 1),
      DEFAULT_SOCKET_BUFFER,
    )
    .option(
      "--netlink-batch-window-ms <ms>",
      "how long the netlink reader holds an exit record before handing it on, 0-100; once records come faster than one a window, hand-offs are at least 10 ms (or this) apart; 0: at once (more: less CPU per record, more latency)",
      int(0, 100),
      DEFAULT_BATCH_WINDOW_MS,
    )
    .option(
      "--cgroup-max-threads <n>",
      "most threads GetCgroupStats reads from /proc for one cgroup v2 directory (a larger cgroup is RESOURCE_EXHAUSTED)",
      int(1, 4194304),
      DEFAULT_CGROUP_MAX_THREADS,
    )
    .option(
      "--cgroup-max-concurrent <n>",
      "GetCgroupStats counts in flight at once, in all (one per principal); more are RESOURCE_EXHAUSTED",
      int(1, 1024),
      DEFAULT_CGROUP_CALLS.maxConcurrent,
    )
    .option(
      "--cgroup-timeout <ms>",
      "longest one GetCgroupStats count may take; past it the count stops and the call is RESOURCE_EXHAUSTED",
      int(1, 2 ** 31 - 1),
      DEFAULT_CGROUP_CALLS.timeoutMs,
    )
    .option(
      "--send-buffer <bytes>",
      "kernel send buffer per client connection (Node on Linux; 0: the kernel's autotuning, up to 4 MiB); smaller backpressures clients that stop reading sooner",
      bytesArg(0, 2 ** 31 - 1),
      DEFAULT_SEND_BUFFER,
    )
    .option(
      "--heap-headroom-mb <MiB>",
      "Node: free heap kept above live data while live data is under twice this, so V8 runs fewer full collections (each pauses every stream for milliseconds); costs up to this much extra memory; sets V8's heap growing factor for the whole process; 0: V8's default sizing",
      int(0, 1024),
      DEFAULT_HEAP_HEADROOM_BYTES / 1024 ** 2,
    )
    .option(
      "--max-message-bytes <bytes>",
      "largest request message; a larger one is refused (RESOURCE_EXHAUSTED) from its length, unread",
      bytesArg(1, 2 ** 31 - 1),
      DEFAULT_MAX_MESSAGE_BYTES,
    )
    .option(
      "--max-connections <n>",
      "most client connections at once (more are closed on accept; lowered to what ulimit -n leaves free)",
      int(1, 2 ** 31 - 1),
      TRANSPORT.maxConnections,
    )
    .option(
      "--max-connections-per-address <n>",
      "most connections from one remote address at once (an IPv6 /64); more are closed on accept. Loopback is not counted: a proxy on this host must cap its own clients",
      int(1, 2 ** 31 - 1),
      TRANSPORT.maxConnectionsPerAddress,
    )
    .option(
      "--header-timeout-ms <ms>",
      "time a connection has to send its first bytes, finish TLS, and send each HTTP/1.1 request's headers",
      int(1, 2 ** 31 - 1),
      TRANSPORT.headerTimeoutMs,
    )
    .option(
      "--request-timeout-ms <ms>",
      "time a request (not its response: streams may last hours) has to arrive whole",
      int(1, 2 ** 31 - 1),
      TRANSPORT.requestTimeoutMs,
    )
    .option(
      "--idle-timeout-ms <ms>",
      "an HTTP/1.1 connection between requests (plus Node's 1 s grace), or an HTTP/2 one with no stream, is closed after this; an HTTP/2 one with streams is pinged this often and closed if it does not answer within as long (Node)",
      int(1, 2 ** 31 - 1),
      TRANSPORT.idleTimeoutMs,
    )
    .option(
      "--h2-max-streams <n>",
      "HTTP/2 streams open at once per connection",
      int(1, 2 ** 31 - 1),
      TRANSPORT.h2MaxStreams,
    )
    .option(
      "--h2-max-resets-per-second <n>",
      "HTTP/2 streams one connection may have reset per second (bursts of twice that); past it the connection is closed with GOAWAY ENHANCE_YOUR_CALM (rapid reset)",
      int(1, 2 ** 31 - 1),
      TRANSPORT.h2MaxResetsPerSecond,
    )
    .option(
      "--h2-max-resets-per-second-per-address <n>",
      "HTTP/2 streams all the connections from one address (loopback as one, an IPv6 /64 as one) may have reset per second together (bursts of twice that); past it the connection that reset one more is closed the same way, and the address's new connections are refused for 2 s. Raise it for a proxy in front of many clients",
      int(1, 2 ** 31 - 1),
      TRANSPORT.h2MaxResetsPerSecondPerAddress,
    )
    .option(
      "--h2-session-memory-mb <MiB>",
      "HTTP/2 memory per connection (header tables, queued frames); past it new streams are refused",
      int(1, 2 ** 31 - 1),
      TRANSPORT.h2SessionMemoryMb,
    )
    .option(
      "--max-header-bytes <bytes>",
      "request header size (HTTP/1.1 and HTTP/2)",
      bytesArg(1024, 2 ** 31 - 1),
      TRANSPORT.maxHeaderBytes,
    )
    .option(
      "--accepts-per-turn <n>",
      "new connections accepted (the listening socket is opened as many times, at most 64 and one per 64 free descriptors), their first requests and young streams' writes served, per event-loop turn, shared fairly between callers (pacing: during a connection storm, connections and streams already flowing are served first)",
      int(1, 2 ** 31 - 1),
      TRANSPORT.acceptsPerTurn,
    )
    .option(
      "--compress",
      "offer gzip and brotli response compression to clients that accept it (off: exit records are small and compressing them costs more CPU than streaming them)",
    )
    .option(
      "--enable-delayacct",
      "set kernel.task_delayacct=1 while serving (restored on exit) so delay fields are filled",
    )
    .option(
      "--lease-ms <ms>",
      "how long a listener outlives its stream; also how long a stream may hold a batch its client has not taken (it reads nothing, or slower than a batch a lease) while the memory budget is past its limit and its principal over its fair share, before it is dropped (a long lease delays that drop as long)",
      int(...LIMIT_RANGES.leaseMs!),
      DEFAULT_LIMITS.leaseMs,
    )
    .option(
      "--default-buffer <n>",
      `queue size (events) when a client asks for 0 (default ${DEFAULT_LIMITS.defaultBuffer}, or --max-buffer if smaller)`,
      int(1),
    )
    .option("--max-buffer <n>", "cap on a client's queue size (events)", int(1), DEFAULT_LIMITS.maxBuffer)
    .option("--max-listeners <n>", "most listeners at once", int(1), DEFAULT_LIMITS.maxListeners)
    .addOption(memoryBudgetOption())
    .addOption(
      new Option(
        "--memory-budget-per-principal <bytes|percent>",
        "most of the memory budget one principal may hold, e.g. 25% or 256MiB",
      ).argParser(cliArg(parseShare)).default({ fraction: 1 }, "100%, all of it"),
    )
    .option(
      "--heartbeat-ms <ms>",
      "heartbeat interval on idle streams",
      int(...LIMIT_RANGES.heartbeatMs!),
      DEFAULT_LIMITS.heartbeatMs,
    )
    .option(
      "--no-metrics",
      "no /metrics (by default: Prometheus metrics for principals with the metrics role, or anyone when authentication is off)",
    );
  addAuthOptions(serve, int);
  addLogOptions(serve, int);
  addNatsOptions(serve, int);
  addConfigOptions(serve); // after the last serve option: each becomes a config key and an env variable
  serve.action(async (o: Record<string, unknown>) => {
    const flags: ServeFlags = {
      configWarnings: [...unknownEnv(serve), ...overriddenEnv(serve)],
      source: o["source"] as ServeFlags["source"],
      host: o["host"] as string,
      port: o["port"] as number,
      simCpus: o["simCpus"] as number,
      simExitRate: o["simExitRate"] as number,
      simSeed: o["simSeed"] as number,
      socketBuffer: o["socketBuffer"] as number,
      netlinkBatchWindowMs: o["netlinkBatchWindowMs"] as number,
      cgroupMaxThreads: o["cgroupMaxThreads"] as number,
      cgroupCalls: { maxConcurrent: o["cgroupMaxConcurrent"] as number, timeoutMs: o["cgroupTimeout"] as number },
      sendBuffer: o["sendBuffer"] as number,
      heapHeadroom: (o["heapHeadroomMb"] as number) * 1024 ** 2,
      maxMessageBytes: o["maxMessageBytes"] as number,
      transport: {
        maxConnections: o["maxConnections"] as number,
        maxConnectionsPerAddress: o["maxConnectionsPerAddress"] as number,
        headerTimeoutMs: o["headerTimeoutMs"] as number,
        requestTimeoutMs: o["requestTimeoutMs"] as number,
        idleTimeoutMs: o["idleTimeoutMs"] as number,
        h2MaxStreams: o["h2MaxStreams"] as number,
        h2MaxResetsPerSecond: o["h2MaxResetsPerSecond"] as number,
        h2MaxResetsPerSecondPerAddress: o["h2MaxResetsPerSecondPerAddress"] as number,
        h2SessionMemoryMb: o["h2SessionMemoryMb"] as number,
        maxHeaderBytes: o["maxHeaderBytes"] as number,
        acceptsPerTurn: o["acceptsPerTurn"] as number,
      },
      compress: o["compress"] === true,
      metrics: o["metrics"] !== false,
      enableDelayacct: o["enableDelayacct"] === true,
      tlsCert: o["tlsCert"] as string | undefined,
      tlsKey: o["tlsKey"] as string | undefined,
      auth: authFlagsFrom(o),
      corsOrigins: typeof o["corsOrigin"] === "string"
        ? (o["corsOrigin"] as string).split(",").map((x) => x.trim()).filter(Boolean)
        : [],
      limits: {
        leaseMs: o["leaseMs"] as number,
        maxBuffer: o["maxBuffer"] as number,
        maxListeners: o["maxListeners"] as number,
        maxListenersPerPrincipal: o["maxListenersPerPrincipal"] as number,
        heartbeatMs: o["heartbeatMs"] as number,
        ...(o["defaultBuffer"] !== undefined && { defaultBuffer: o["defaultBuffer"] as number }),
      },
      memoryBudget: o["memoryBudget"] as number,
      memoryBudgetPerPrincipal: o["memoryBudgetPerPrincipal"] as Share,
      log: logFlagsFrom(o),
      fleet: natsFlagsFrom(o),
      given: givenSettings(serve),
    };
    // --print-config refuses what a start would refuse (serve-checks.ts) before printing.
    if (o["printConfig"] === true) return printConfig(effectiveConfig(serve), flags);
    await serveCommand(flags);
  });
  return serve;
}
