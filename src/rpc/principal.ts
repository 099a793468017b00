/**
 * The caller as the RPC handlers see it. The HTTP edge authenticates each
 * request and puts the outcome in Connect's context values (CALL_AUTH); a
 * handler's first step is callerWith(), which refuses an unauthenticated
 * caller or one without the role, and writes the audit line. A call that
 * reaches a handler without the edge having run fails closed.
 */
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { AuditLog } from "../auth/audit.ts";
import { RoleRequiredError, UnauthenticatedError } from "../auth/errors.ts";
import type { Principal, Role } from "../core/principal.ts";

/** What the HTTP edge established about a call. */
export interface CallAuth {
  /** The caller, when authentication succeeded. */
  readonly principal?: Principal | undefined;
  /** Why it failed, otherwise. */
  readonly failure?: UnauthenticatedError | undefined;
  /** The peer's address, for the audit line. */
  readonly address: string;
  readonly audit?: AuditLog | undefined;
}

/** The context key the HTTP edge sets for every call. */
export const CALL_AUTH = createContextKey<CallAuth>(
  { failure: new UnauthenticatedError("no authentication ran for this call (a server wiring fault)"), address: "" },
  { description: "taskwire call authentication" },
);

/** The caller, after checking it authenticated and holds `role` for `method`. */
export function callerWith(ctx: Pick<HandlerContext, "values">, role: Role, method: string): Principal {
  const a = ctx.values.get(CALL_AUTH);
  const who = a.principal;
  if (who === undefined) {
    const failure = a.failure ?? new UnauthenticatedError("not authenticated");
    a.audit?.record({ kind: "unauthenticated", address: a.address, method, reason: failure.message });
    throw failure;
  }
  if (!who.roles.has(role)) {
    a.audit?.record({
      kind: "permission-denied",
      address: a.address,
      principal: who.id,
      method,
      reason: `needs role ${role}`,
    });
    throw new RoleRequiredError(role, who.id, method);
  }
  return who;
}

/** The owner a lookup is limited to: none for an admin (every listener), else the caller's own. */
export function ownerFilter(who: Principal): string | undefined {
  return who.roles.has("admin") ? undefined : who.id;
}

/** Whether `who` may see a task of this uid (a uid-limited principal sees only its uids). */
export function maySee(who: Principal, uid: number | undefined): boolean {
  return who.uids === undefined || (uid !== undefined && who.uids.has(uid));
}
