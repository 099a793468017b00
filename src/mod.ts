/**
 * @module
 * taskwire as a library: build a server over a taskstats source and serve it
 * from any Fetch API host, or on Node with `listenNode`.
 *
 * ```ts
 * import { createServer, createSimSource, listenNode } from "taskwire";
 * const server = createServer({ source: createSimSource({ cpus: 8 }) });
 * const { url } = await listenNode(server, { port: 7878 });
 * ```
 */
export { createServer, type ServerOptions, type TaskwireServer } from "./server/server.ts";
export { listenNode, type ListenOptions, type Listening } from "./runtime/node.ts";
export { listen } from "./runtime/listen.ts";
export { createApp, createRoutes, type AppOptions } from "./server/app.ts";
export { createSimSource, type SimSource, type SimSourceOptions } from "./sources/sim/sim-source.ts";
export { createSimKernel, type SimKernel, type SimKernelOptions } from "./sources/sim/sim-kernel.ts";
export {
  TaskNotFoundError, SourcePermissionError, SourceUnavailableError,
  type TaskstatsSource, type ExitSink, type SourceInfo,
} from "./sources/source.ts";
export { DEFAULT_LIMITS, type Limits } from "./core/registry.ts";
export { ListenerNotFoundError, LimitExceededError } from "./rpc/errors.ts";
export { CpulistError, parseCpulist, parseCpumask, formatCpulist, createPossibleCpus, type PossibleCpus } from "./kernel/cpulist.ts";
export { createListenerTable, type ListenerTable } from "./kernel/listener-table.ts";
export type { ExitRecord } from "./kernel/exit-record.ts";
export { VERSION } from "./version.ts";
