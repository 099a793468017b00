/**
 * Typed errors. Every error a taskwire server returns carries an ErrorDetail
 * (reason + metadata); the SDK's client turns such a ConnectError into the
 * subclass for its reason, so callers write `err instanceof TaskNotFoundError`
 * instead of comparing codes or parsing messages. Each is still a ConnectError
 * (same code, rawMessage, metadata, details), so code written against plain
 * connect-es keeps working.
 */
import { ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, ErrorReason } from "./gen/taskwire/v1/taskstats_pb.ts";

/**
 * Base of the SDK's typed errors: a taskwire server's error with its reason.
 * `name` stays "ConnectError" because connect-es recognises its errors by that
 * name (`instanceof ConnectError`, `ConnectError.from`).
 */
export class TaskwireError extends ConnectError {
  /** Which failure this is (the code says only what kind). */
  readonly reason: ErrorReason;
  /** The values the failure is about, e.g. `{ pid: "123" }` or `{ listener_id: "…" }`. */
  readonly values: Readonly<Record<string, string>>;

  /** Wraps `from`, a ConnectError whose ErrorDetail named `reason`. */
  constructor(from: ConnectError, reason: ErrorReason, metadata: Record<string, string>) {
    super(
      from.rawMessage,
      from.code,
      from.metadata,
      from.details as ConstructorParameters<typeof ConnectError>[3],
      from.cause,
    );
    this.reason = reason;
    this.values = Object.freeze({ ...metadata });
  }

  // ConnectError's own instanceof accepts anything named "ConnectError"; the
  // subclasses must test their prototype chain, or every error would match.
  static override [Symbol.hasInstance](v: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, v);
  }
}

function numberOf(metadata: Record<string, string>, key: string): number | undefined {
  const v = metadata[key];
  return v === undefined ? undefined : Number(v);
}

/** NOT_FOUND: no live task with that pid or tgid (it may have exited; exit records come from watchExits). */
export class TaskNotFoundError extends TaskwireError {
  /** The pid asked for (GetPid). */
  get pid(): number | undefined {
    return numberOf(this.values, "pid");
  }
  /** The tgid asked for (GetTgid). */
  get tgid(): number | undefined {
    return numberOf(this.values, "tgid");
  }
}

/**
 * NOT_FOUND: the listener was never registered, was deregistered, its lease
 * expired (e.g. the server restarted), or it is another principal's (the
 * server says all of these alike). A stream of a listener that is
 * deregistered while it is read ends with this error too, after the events
 * the listener had queued; `removed` then says why.
 */
export class ListenerNotFoundError extends TaskwireError {
  /** The listener id asked for (clipped by the server when it was very long). */
  get listenerId(): string | undefined {
    return this.values["listener_id"];
  }
  /** Why the listener was removed while its stream read it; undefined when a request named an unknown id. */
  get removed(): string | undefined {
    return this.values["removed"];
  }
}

/** INVALID_ARGUMENT: a cpumask the kernel's cpulist rules reject, or CPUs outside the server's possible set (the message names both). */
export class InvalidCpumaskError extends TaskwireError {}

/** INVALID_ARGUMENT: another request field is missing or out of range (the message names it and the valid range). */
export class InvalidRequestError extends TaskwireError {}

/** RESOURCE_EXHAUSTED: a server limit is reached; the message names it (`values.limit` too, where the server sets it). */
export class LimitExceededError extends TaskwireError {
  /**
   * Set when the refusal is about the moment (a call rate, calls under way
   * now): the request changed nothing, and the same request may pass after
   * this many milliseconds. The client retries such unary calls itself
   * (TaskwireClientOptions.retry). Undefined for a limit the caller must act
   * on (too many streams or listeners of its own).
   */
  get retryAfterMs(): number | undefined {
    return retryAfterOf(this.values);
  }
}

function retryAfterOf(values: Readonly<Record<string, string>>): number | undefined {
  const v = values["retry_after_ms"];
  if (v === undefined || !/^\d{1,9}$/.test(v)) return undefined;
  return Number(v);
}

/** How long the server asked to wait before the same request (`retry_after_ms`), when `err` is such a refusal. */
export function retryAfterMs(err: unknown): number | undefined {
  const typed = toTaskwireError(err);
  return typed instanceof LimitExceededError ? typed.retryAfterMs : undefined;
}

/** PERMISSION_DENIED: the server lacks a kernel privilege (CAP_NET_ADMIN); fix the server, not the request. */
export class ServerPermissionError extends TaskwireError {}

/** UNAVAILABLE: the server's source cannot serve now (the kernel refused, or it closed); retry later. */
export class SourceUnavailableError extends TaskwireError {}

/**
 * FAILED_PRECONDITION: the server's source lacks the feature asked for
 * (GetCgroupStats on a server running the simulated kernel, which has no
 * cgroups, or on a host without a cgroup filesystem).
 */
export class UnsupportedError extends TaskwireError {}

/** OUT_OF_RANGE: a resume position (after_seq) this listener never sent. */
export class SeqOutOfRangeError extends TaskwireError {}

/** ABORTED: another SubscribeExits took this listener over; this stream ended for good. */
export class StreamTakenOverError extends TaskwireError {}

/** UNAVAILABLE: the server is shutting down; reconnect later (watchExits does). */
export class ShuttingDownError extends TaskwireError {}

/** UNAUTHENTICATED: no credentials, or ones the server does not accept; pass `token` (or a client certificate). */
export class UnauthenticatedError extends TaskwireError {}

/**
 * PERMISSION_DENIED: the caller's principal lacks the role this call needs
 * (`role` names it), or is limited to some uids and the call would show it
 * other users' tasks (GetCgroupStats; `role` is then undefined).
 */
export class RoleRequiredError extends TaskwireError {
  /** The role the call needs ("read", "subscribe", "admin", "metrics"). */
  get role(): string | undefined {
    return this.values["role"];
  }
}

const CLASSES: Record<ErrorReason, typeof TaskwireError> = {
  [ErrorReason.UNSPECIFIED]: TaskwireError,
  [ErrorReason.INVALID_CPUMASK]: InvalidCpumaskError,
  [ErrorReason.INVALID_REQUEST]: InvalidRequestError,
  [ErrorReason.TASK_NOT_FOUND]: TaskNotFoundError,
  [ErrorReason.LISTENER_NOT_FOUND]: ListenerNotFoundError,
  [ErrorReason.LIMIT_EXCEEDED]: LimitExceededError,
  [ErrorReason.PERMISSION_DENIED]: ServerPermissionError,
  [ErrorReason.SOURCE_UNAVAILABLE]: SourceUnavailableError,
  [ErrorReason.UNSUPPORTED]: UnsupportedError,
  [ErrorReason.SEQ_OUT_OF_RANGE]: SeqOutOfRangeError,
  [ErrorReason.STREAM_TAKEN_OVER]: StreamTakenOverError,
  [ErrorReason.SHUTTING_DOWN]: ShuttingDownError,
  [ErrorReason.UNAUTHENTICATED]: UnauthenticatedError,
  [ErrorReason.ROLE_REQUIRED]: RoleRequiredError,
};

/**
 * The typed error for `err`: a TaskwireError subclass when `err` is a
 * ConnectError carrying taskwire's ErrorDetail, otherwise `err` unchanged
 * (transport failures, cancellations, other servers).
 */
export function toTaskwireError(err: unknown): unknown {
  if (err instanceof TaskwireError || !(err instanceof ConnectError)) return err;
  const [detail] = err.findDetails(ErrorDetailSchema);
  if (detail === undefined) return err;
  const type = CLASSES[detail.reason] ?? TaskwireError;
  return new type(err, detail.reason, detail.metadata);
}

export { ErrorReason };
