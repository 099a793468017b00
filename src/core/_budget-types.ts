/**
 * The memory budget's public shapes (its options, the interface a server's
 * listeners are charged through) and how a share of it is resolved to bytes:
 * what budget.ts's callers read, apart from the accounting itself. budget.ts
 * re-exports all of it.
 */
import type { BudgetAccount } from "./_budget-accounts.ts";

/** How much of the budget one owner may hold: a byte count, or a fraction (0-1] of the budget. */
export type Share = number | { readonly fraction: number };

/** Options of a budget. */
export interface BudgetOptions {
  /** Bytes in all; omitted: unlimited (still counted). */
  readonly limit?: number | undefined;
  /** Most one owner may hold; omitted: the whole budget. */
  readonly perOwner?: Share | undefined;
  /** The budget's last bytes, kept for owners holding less than their slice of them; omitted: none. At most half. */
  readonly reserve?: Share | undefined;
}

/** A budget shared by every listener of a server. */
export interface MemoryBudget {
  /** Bytes in all (Number.MAX_SAFE_INTEGER when unlimited). */
  readonly limit: number;
  /** Most bytes one owner may hold. */
  readonly ownerLimit: number;
  /** The reserve's bytes: past limit - reserve, an owner charges only while under reserve / owners. */
  readonly reserve: number;
  /** Bytes charged now, over all owners. */
  readonly used: number;
  /** Bytes `owner` holds now. */
  usedBy(owner: string): number;
  /**
   * Why `bytes` more for `owner` would not fit: the budget is full, the owner
   * holds its share, or only the reserve is left and the owner holds its slice
   * of it (undefined when they fit).
   */
  refusal(owner: string, bytes: number): "budget" | "owner" | "reserve" | undefined;
  /** An owner's slice of the reserve now (the reserve over the owners with an account). */
  readonly reserveSlice: number;
  /** The slice `owner` is judged by: reserveSlice, or for an owner with no account yet the slice it will have. */
  sliceOf(owner: string): number;
  /** What each owner may hold however full the budget is: the budget less the reserve, over the owners with an account. */
  readonly fairShare: number;
  /** The fair share `owner` is judged by: fairShare, or for an owner with no account yet the share it will have. */
  fairShareOf(owner: string): number;
  /**
   * The most `owner` may hold by borrowing past its fair share what owners holding less than theirs leave (for an
   * owner with no account yet, judged with itself counted): the level at which the budget less the reserve is
   * filled by it and the others, each counted at what it holds but at most that level (max-min fairness; counted
   * again once a 256th of the budget, and 256 bytes per owner, were charged or given back). Its fair share when
   * every other owner holds at least that, more when some hold less. Borrowed room is made under the budget less
   * the reserve by the drops of owners holding more than the level, never past the limit.
   */
  borrowLevelOf(owner: string): number;
  /**
   * Makes room for `bytes` more for `owner` when they do not fit but `owner`,
   * with them, holds no more than its fair share (counting it among the
   * owners if it is not yet), or than what it may borrow (borrowLevelOf)
   * where the others' drops can make the room: the owners holding most over
   * its share or level drop their oldest. Returns whether `bytes` may be
   * charged now (within its fair share, past the budget by what the others
   * hold over theirs and cannot drop; borrowed, never past it); false, and
   * nothing changed, when they may not.
   */
  makeRoom(owner: string, bytes: number): boolean;
  /** An account that charges `owner` (one per listener). */
  open(owner: string): BudgetAccount;
}

/** A share as bytes of a budget of `limit` bytes (never more than the budget). */
export function resolveShare(share: Share | undefined, limit: number): number {
  if (share === undefined) return limit;
  if (typeof share === "number") {
    if (!Number.isSafeInteger(share) || share < 1) {
      throw new RangeError(`a per-owner share must be a positive whole number of bytes, got ${share}`);
    }
    return Math.min(share, limit);
  }
  if (!(share.fraction > 0 && share.fraction <= 1)) {
    throw new RangeError(`a per-owner share must be a fraction in (0, 1], got ${share.fraction}`);
  }
  return Math.max(1, Math.floor(limit * share.fraction));
}
