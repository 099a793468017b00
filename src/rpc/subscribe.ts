/**
 * SubscribeExits: the whole request is validated into a plan first (nothing
 * created or changed), then the listener is created or taken over and
 * streamed through the core's subscription with the stream's encoder.
 */
import { HELD_CALL } from "./held-call.ts";
import type { HandlerContext } from "@connectrpc/connect";
import type { OverflowPolicy as QueuePolicy } from "../core/event-queue.ts";
import type { Principal } from "../core/principal.ts";
import { LIMIT_RANGES } from "../core/limits.ts";
import { type EncodeGate, isStreamEnd, type StreamSink, subscribe } from "../core/subscription.ts";
import type { SubscribeExitsRequest, SubscribeExitsResponse } from "../gen/taskwire/v1/taskstats_pb.ts";
import { toPolicy } from "./convert.ts";
import { InvalidRequestError, pastDeadline, throwIfPastDeadline, toConnectError } from "./errors.ts";
import { callerWith, ownerFilter } from "./principal.ts";
import type { SharedEncodeGate } from "./encode-gate.ts";
import { compileFieldMask, compileFilter, type Projection, type RecordFilter } from "./projection.ts";
import { ownership, requireMask, type ServiceDeps } from "./requests.ts";
import { negotiatedCodec, type ServerListener, streamEncoder } from "./stream.ts";
import { countedEncoder, STREAM_REPORT } from "./stream-report.ts";
import { PRE_ENCODED_STREAM } from "./fast-binary/pre-encoded.ts";
import { MESSAGE_SINK } from "./stream-sink.ts";

const [MIN_HEARTBEAT_MS, MAX_HEARTBEAT_MS] = LIMIT_RANGES.heartbeatMs!;

/** A SubscribeExits request, validated: everything the stream needs, nothing done yet. */
interface SubscribePlan {
  /** The listener to stream, or undefined for a new ephemeral one on `cpus`. */
  readonly existing: ServerListener | undefined;
  readonly cpus: readonly number[];
  readonly filter: RecordFilter;
  readonly project: Projection;
  readonly heartbeatMs: number;
  readonly maxBatch: number;
  readonly afterSeq: bigint;
  readonly policy: QueuePolicy;
}

function planSubscribe(deps: ServiceDeps, req: SubscribeExitsRequest, who: Principal): SubscribePlan {
  const { registry } = deps;
  const project = compileFieldMask(req.fields);
  const filter = compileFilter(req.filter);
  if ((req.listenerId === "") === (req.cpumask === "")) {
    throw new InvalidRequestError(
      "set exactly one of listener_id (a listener from Register) or cpumask (an ephemeral listener for these CPUs)",
    );
  }
  if (req.afterSeq !== 0n && req.listenerId === "") {
    throw new InvalidRequestError("after_seq resumes a listener: pass listener_id with it");
  }
  const heartbeatMs = req.heartbeatMs === 0 ? registry.limits.heartbeatMs : req.heartbeatMs;
  if (heartbeatMs < MIN_HEARTBEAT_MS || heartbeatMs > MAX_HEARTBEAT_MS) {
    throw new InvalidRequestError(
      `heartbeat_ms ${req.heartbeatMs} is out of range; use ${MIN_HEARTBEAT_MS}-${MAX_HEARTBEAT_MS} or 0 for the default`,
    );
  }
  const policy = toPolicy(req.overflow);
  const existing = req.listenerId === "" ? undefined : registry.get(req.listenerId, ownerFilter(who));
  const cpus = existing === undefined ? requireMask(req.cpumask, deps, "cpumask") : [];
  existing?.checkResume(req.afterSeq);
  const maxBatch = Math.min(req.maxBatch === 0 ? registry.limits.maxBatch : req.maxBatch, registry.limits.maxBatch);
  return { existing, cpus, filter, project, heartbeatMs, maxBatch, afterSeq: req.afterSeq, policy };
}

// The server's gate as a stream of `principal` (an anonymous caller: its address's bucket) asks it: the principals
// waiting share each turn round-robin.
function principalGate(gate: SharedEncodeGate | undefined, principal: string): EncodeGate | undefined {
  return gate && { admit: (max) => gate.admit(max, principal) };
}

/** SubscribeExits: validate the whole request, then create or take over the listener and stream it. */
export async function* subscribeExits(
  deps: ServiceDeps,
  req: SubscribeExitsRequest,
  ctx: HandlerContext,
): AsyncGenerator<SubscribeExitsResponse> {
  const { registry } = deps;
  let plan: SubscribePlan;
  let who: Principal;
  try {
    who = callerWith(ctx, "subscribe", "SubscribeExits");
    plan = planSubscribe(deps, req, who);
  } catch (err) {
    throw toConnectError(err);
  }
  throwIfPastDeadline(ctx); // a timeout of 0: refused before it changes anything
  const codec = negotiatedCodec(ctx);
  let leave: () => void;
  try {
    leave = deps.admission.enterStream(who.id);
  } catch (err) {
    throw toConnectError(err);
  }
  // Counted among streams from here on, not among calls under way, until its response is delivered (the adapter
  // calls `leave` then); where no adapter watches the response, until the client goes or the stream ends.
  const handedOver = ctx.values.get(HELD_CALL).handOver(leave);
  if (!handedOver) ctx.signal.addEventListener("abort", leave, { once: true });
  try {
    const listener = plan.existing ??
      registry.create(plan.cpus, { buffer: req.buffer, policy: plan.policy, ephemeral: true, ...ownership(who) });
    // The opening message means the kernel is listening; an ephemeral listener it refused is not kept.
    await deps.source.synced().catch((err: unknown) => {
      if (listener.ephemeral) registry.remove(listener, "the kernel did not register its CPUs");
      throw err;
    });
    registry.get(listener.id, listener.owner); // still there after the wait (a Deregister may have raced it)
    const late = pastDeadline(ctx);
    if (late !== undefined) {
      // Its time ran out while the kernel was asked: no takeover, no filter change, no listener kept.
      if (listener.ephemeral) registry.remove(listener, "its stream's deadline passed before it started");
      throw late;
    }
    listener.filter = plan.filter;
    const replay = plan.afterSeq === 0n ? undefined : listener.replayFrom(Number(plan.afterSeq));
    const sink: StreamSink<SubscribeExitsResponse> | undefined = ctx.values.get(MESSAGE_SINK);
    const report = ctx.values.get(STREAM_REPORT); // someone watching calls (the access log) wants the counts
    if (report !== undefined) report.listenerId = listener.id;
    yield* subscribe(registry, listener, {
      maxBatch: plan.maxBatch,
      heartbeatMs: plan.heartbeatMs,
      signal: ctx.signal,
      replay,
      encode: countedEncoder(
        streamEncoder(registry, listener, {
          codec,
          project: plan.project,
          host: deps.host,
          heartbeatMs: plan.heartbeatMs,
          enveloped: ctx.values.get(PRE_ENCODED_STREAM),
        }),
        report,
      ),
      ...(deps.lingerMs && { lingerMs: deps.lingerMs }),
      // connect-es builds and serializes these as they are yielded: dear, so paced per turn, principals in turn.
      gate: codec === "json" || plan.project !== undefined
        ? principalGate(deps.encodeGate, ownership(who).owner)
        : undefined,
      sink,
      abandon: (why) => {
        if (report !== undefined) report.stalled = true;
        const reset = ctx.values.get(HELD_CALL).reset();
        deps.onStalled?.({ listenerId: listener.id, owner: listener.owner, why, reset });
      },
    });
    throwIfPastDeadline(ctx);
  } catch (err) {
    // A stream that ended (taken over, removed, shut down) says so, even past its deadline.
    if (!ctx.signal.aborted || isStreamEnd(err)) throw toConnectError(err);
    throwIfPastDeadline(ctx); // else the client went away: nobody is left to tell
  } finally {
    if (!handedOver) leave();
  }
}
