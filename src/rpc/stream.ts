/**
 * SubscribeExits on the wire: the core's subscription (core/subscription.ts)
 * with an encoder chosen once per stream from the protocol and codec that
 * Connect negotiated. Binary streams without a field mask send pre-encoded
 * batches (fast-binary/); JSON and masked streams build messages.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { parseContentType as connectContentType } from "@connectrpc/connect/protocol-connect";
import { parseContentType as grpcContentType } from "@connectrpc/connect/protocol-grpc";
import { parseContentType as grpcWebContentType } from "@connectrpc/connect/protocol-grpc-web";
import type { Listener } from "../core/listener.ts";
import type { ListenerRegistry } from "../core/registry.ts";
import type { StepEncoder } from "../core/subscription.ts";
import {
  type HostIdentitySchema,
  type SubscribeExitsResponse,
  SubscribeExitsResponseSchema,
} from "../gen/taskwire/v1/taskstats_pb.ts";
import type { ExitRecord } from "../kernel/exit-record.ts";
import { type ServerItem, toExitEvent } from "./convert.ts";
import { BatchBuffer, envelopedBatch, preEncodedBatch } from "./fast-binary/batch.ts";
import { preEncodedEnvelope } from "./fast-binary/pre-encoded.ts";
import type { Projection } from "./projection.ts";

/** A listener of the server: exit records queued, each exit's encoded Exit message retained. */
export type ServerListener = Listener<ExitRecord, Uint8Array>;

/** The server's listener registry. */
export type ServerRegistry = ListenerRegistry<ExitRecord, Uint8Array>;

/** How the client reads messages. */
export type Codec = "binary" | "json";

const PARSERS: Record<string, (contentType: string | null) => { binary: boolean } | undefined> = {
  connect: connectContentType,
  grpc: grpcContentType,
  "grpc-web": grpcWebContentType,
};

/** The codec of this call, read by the negotiated protocol's own content-type parser. */
export function negotiatedCodec(ctx: Pick<HandlerContext, "protocolName" | "requestHeader">): Codec {
  const parsed = PARSERS[ctx.protocolName]?.(ctx.requestHeader.get("content-type"));
  if (parsed === undefined) throw new TypeError(`no codec for protocol ${ctx.protocolName}`);
  return parsed.binary ? "binary" : "json";
}

/** HostIdentity's fields (hostname, boot_id, machine_id, source). */
export type HostIdentityInit = MessageInitShape<typeof HostIdentitySchema>;

/** How a stream's messages are encoded. */
export interface StreamEncoding {
  readonly codec: Codec;
  readonly project: Projection;
  readonly host?: HostIdentityInit | undefined;
  /** The stream's heartbeat interval, ms, told in its opening message (a client's idle watchdog needs it). */
  readonly heartbeatMs?: number | undefined;
  /** The transport sends finished envelopes as they are (fast-binary/pre-encoded.ts). */
  readonly enveloped?: boolean;
}

/**
 * The stream's encoder: pre-encoded batches for binary without a mask
 * (finished envelopes where the transport takes them), messages otherwise.
 */
export function streamEncoder(
  registry: ServerRegistry,
  listener: ServerListener,
  o: StreamEncoding,
): StepEncoder<ExitRecord, Uint8Array, SubscribeExitsResponse> {
  const message = (fields: MessageInitShape<typeof SubscribeExitsResponseSchema>): SubscribeExitsResponse =>
    create(SubscribeExitsResponseSchema, {
      cpumask: registry.cpumaskOf(listener),
      queued: listener.queue.depth,
      ...fields,
    });
  const project = o.project;
  // The stream's own buffer for its pre-encoded batches (fast-binary/batch.ts), given up when it idles.
  const buffer = new BatchBuffer();
  const preEncoded = o.enveloped === true ? envelopedBatch : preEncodedBatch;
  const binary = o.codec === "binary" && project === undefined;
  const batch = binary
    ? (items: readonly ServerItem[]) => preEncoded(items, listener.queue.depth, buffer)
    : (items: readonly ServerItem[]) =>
      create(SubscribeExitsResponseSchema, {
        events: items.map((item) => toExitEvent(item, project)),
        queued: listener.queue.depth,
      });
  return {
    open: () =>
      message({
        listenerId: listener.id,
        ...(o.host && { host: o.host }),
        ...(o.heartbeatMs !== undefined && { heartbeatMs: o.heartbeatMs }),
      }),
    batch,
    heartbeat: () => (buffer.release(), message({ heartbeat: true })),
    // A binary batch's size is known once made; a JSON or masked one's only as connect-es serializes it.
    ...(binary && { sizeOf: encodedSize }),
  };
}

/** What a binary batch's message holds beside its bytes as the transport sends it (its objects, the write's). */
const BATCH_OVERHEAD = 256;

// The bytes a pre-encoded batch holds on its way to the client: its finished envelope, or (connect-es serializing it)
// its events' bytes and a header.
function encodedSize(m: SubscribeExitsResponse): number {
  const envelope = preEncodedEnvelope(m);
  return BATCH_OVERHEAD + (envelope?.byteLength ?? m.$unknown?.reduce((n, f) => n + f.data.byteLength + 16, 0) ?? 0);
}
