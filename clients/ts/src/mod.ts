/**
 * @module
 * The taskwire client SDK: a typed client for the TaskStats service
 * (Linux taskstats over the network) and `watchExits`, an async iterator over
 * a listener's exit records.
 *
 * ```ts
 * import { createTaskwireClient, watchExits } from "@taskwire/client";
 * const client = createTaskwireClient("http://127.0.0.1:7878");
 * console.log(await client.getInfo({}));
 * for await (const ev of watchExits(client, { cpumask: "0-3" })) {
 *   if (ev.event.case === "exit") console.log(ev.cpu, ev.event.value.pidStats?.acComm);
 * }
 * ```
 */
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { clientFactory } from "./client.ts";
import { fetchTlsAdvice } from "./_transport-failures.ts";

export type { TaskwireClient, TaskwireClientOptions } from "./client.ts";

/**
 * Creates a client for the taskwire server at `baseUrl` (e.g.
 * "http://127.0.0.1:7878"), speaking the Connect protocol over the runtime's
 * fetch (browsers, Deno, Bun). On Node the package's "node" export uses
 * connect-node's HTTP client instead. `protocol: "grpc-web"` speaks gRPC-Web;
 * pass `transport` to bring your own.
 */
export const createTaskwireClient = clientFactory(({ tls, ...s }) => {
  if (tls !== undefined) {
    throw new TypeError(
      "tls (CA, client certificate) is set on Node only; here the runtime's own trust store and certificates apply",
    );
  }
  if (s.protocol === "grpc") {
    throw new TypeError(
      'protocol "grpc" needs HTTP/2 trailers, which fetch cannot read; use "grpc-web" or "connect" here (or the SDK on Node)',
    );
  }
  return s.protocol === "grpc-web" ? createGrpcWebTransport(s) : createConnectTransport(s);
}, fetchTlsAdvice);
export { type Reconnecting, type Subscribed, watchExits, type WatchExitsOptions } from "./watch.ts";
export { Code, ConnectError } from "@connectrpc/connect";
export { describeExit, type ExitDescription, exitStatusText, isFailedExit, signalName } from "./exit-status.ts";
export {
  ErrorReason,
  InvalidCpumaskError,
  InvalidRequestError,
  LimitExceededError,
  ListenerNotFoundError,
  RoleRequiredError,
  SeqOutOfRangeError,
  ServerPermissionError,
  ShuttingDownError,
  SourceUnavailableError,
  StreamTakenOverError,
  TaskNotFoundError,
  TaskwireError,
  toTaskwireError,
  UnauthenticatedError,
  UnsupportedError,
} from "./errors.ts";
export { explainTlsFailure, type TlsAdvice } from "./_transport-failures.ts";
export {
  CgroupStatsMethod,
  type DeregisterResponse,
  type Exit,
  type ExitEvent,
  type ExitFilter,
  type GetCgroupStatsResponse,
  type GetInfoResponse,
  type GetPidResponse,
  type GetTgidResponse,
  type HostIdentity,
  type ListenerInfo,
  LossReason,
  type Lost,
  OverflowPolicy,
  type RegisterResponse,
  type SubscribeExitsResponse,
  TaskStats,
} from "./gen/taskwire/v1/taskstats_pb.ts";
export { TaskStatsSchema } from "./gen/taskwire/kernel/v1/taskstats_pb.ts";
/** The message schemas, for consumers that decode or encode messages themselves (fromBinary, fromJson, toJson). */
export {
  DeregisterRequestSchema,
  DeregisterResponseSchema,
  ErrorDetailSchema,
  ExitEventSchema,
  ExitFilterSchema,
  ExitSchema,
  GetCgroupStatsRequestSchema,
  GetCgroupStatsResponseSchema,
  GetInfoRequestSchema,
  GetInfoResponseSchema,
  GetPidRequestSchema,
  GetPidResponseSchema,
  GetTgidRequestSchema,
  GetTgidResponseSchema,
  HostIdentitySchema,
  ListenerInfoSchema,
  LostSchema,
  RegisterRequestSchema,
  RegisterResponseSchema,
  SubscribeExitsRequestSchema,
  SubscribeExitsResponseSchema,
} from "./gen/taskwire/v1/taskstats_pb.ts";
export { exitEventToJson, type HostedExitEvent, type JsonOptions, messageToJson } from "./json.ts";
/** struct taskstats as a message (the kernel's field names, camelCased). */
export type { TaskStats as TaskStatsRecord } from "./gen/taskwire/kernel/v1/taskstats_pb.ts";
