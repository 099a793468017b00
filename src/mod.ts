/**
 * @module
 * taskwire as a library: build a server over a taskstats source (the real
 * kernel's netlink, or the simulated kernel) and serve it on this runtime.
 *
 * ```ts
 * import { createServer, createSimSource, listen } from "taskwire";
 * const server = createServer({ source: createSimSource({ cpus: 8 }) });
 * const { url } = await listen(server, { port: 7878 });
 * ```
 */
export {
  type Caller,
  createServer,
  type HeldCall,
  type ListenerSnapshot,
  type ServerOptions,
  type TaskwireServer,
} from "./server/server.ts";
export { listen, runtimeLabel } from "./runtime/listen.ts";
export { DEFAULT_SEND_BUFFER, type Listening, listenNode, type ListenOptions, type TlsFiles } from "./runtime/node.ts";
export { createSimSource, type SimSource, type SimSourceOptions } from "./sources/sim/sim-source.ts";
export { createSimKernel, type SimKernel, type SimKernelOptions } from "./sources/sim/sim-kernel.ts";
export {
  DEFAULT_SOCKET_BUFFER,
  type NetlinkSource,
  type NetlinkSourceOptions,
  NetlinkUnavailableError,
  openNetlinkSource,
} from "./sources/netlink/netlink-source.ts";
export {
  type ExitSink,
  type SourceInfo,
  SourcePermissionError,
  SourceUnavailableError,
  TaskNotFoundError,
  type TaskstatsSource,
} from "./sources/source.ts";
export { DEFAULT_LIMITS, type Limits } from "./core/limits.ts";
export type { RegistryStats } from "./core/registry.ts";
export { LimitExceededError, ListenerNotFoundError } from "./core/errors.ts";
export { CpulistError, formatCpulist, parseCpulist, parseCpumask, type PossibleCpus } from "./kernel/cpulist.ts";
export type { ExitRecord } from "./kernel/exit-record.ts";
export { VERSION } from "./version.ts";
