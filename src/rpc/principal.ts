/**
 * The caller's principal as the RPC handlers see it: set per request by the
 * HTTP edge (auth middleware) in Connect's context values, read here.
 */
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { RoleRequiredError } from "../auth/errors.ts";
import { type Principal, type Role, UNAUTHENTICATED } from "../core/principal.ts";

/** The context key the HTTP edge sets; unset means no authentication is configured. */
export const PRINCIPAL = createContextKey<Principal>(UNAUTHENTICATED, { description: "taskwire principal" });

/** The caller, after checking it holds `role` for `what` (a method name, for the message). */
export function callerWith(ctx: Pick<HandlerContext, "values">, role: Role, what: string): Principal {
  const who = ctx.values.get(PRINCIPAL);
  if (!who.roles.has(role)) throw new RoleRequiredError(role, who.id, what);
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
