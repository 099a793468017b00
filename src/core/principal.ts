/**
 * Who is calling, as authentication established it. The core keys ownership
 * by `id` only; roles and uid limits are the RPC edge's to enforce.
 */

/** What a principal may do: read (GetPid, GetTgid, GetInfo, GetCgroupStats), subscribe (Register, Deregister, SubscribeExits), admin (every listener), metrics. */
export type Role = "read" | "subscribe" | "admin" | "metrics";

/** Every role, in the order help texts list them. */
export const ROLES: readonly Role[] = Object.freeze(["read", "subscribe", "admin", "metrics"]);

/** An authenticated (or, where allowed, anonymous) caller. */
export interface Principal {
  /** A stable name: a token's principal, a client certificate's subject, or "anonymous". */
  readonly id: string;
  readonly roles: ReadonlySet<Role>;
  /** Only tasks of these uids (a team sees its own processes); undefined for every task. */
  readonly uids?: ReadonlySet<number> | undefined;
  /** How it was established: "token", "mtls" or "none" (auth off). */
  readonly via: "token" | "mtls" | "none";
}

/** The caller when no authentication is configured: every role, every task. */
export const UNAUTHENTICATED: Principal = Object.freeze({
  id: "anonymous",
  roles: new Set<Role>(ROLES),
  via: "none" as const,
});
