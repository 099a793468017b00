/**
 * A principal's record in the memory budget (its accounts and total) and
 * its pool, the hot path every listener of the principal charges through.
 * The budget that owns them is seen through PoolBudget, so this module
 * needs nothing of budget.ts.
 */
import type { BudgetPool, ListenerAccount } from "./_budget-accounts.ts";

/** What a pool reads and asks of the budget it charges. */
export interface PoolBudget {
  readonly limit: number;
  readonly ownerLimit: number;
  /** limit - reserve: what any owner may fill. */
  readonly unreserved: number;
  readonly reserveSlice: number;
  used: number;
  /** Bytes charged and given back since fair shares were counted. */
  drift: number;
  /** Room made by others' drops, or borrowed: see budget.ts. */
  claim(o: Owner, bytes: number): boolean;
  mayClaim(o: Owner, bytes: number): boolean;
}

/** One owner's accounts, total and pool. */
export interface Owner {
  used: number;
  /** What it held when fair shares were last counted (_Budget.#levels). */
  counted: number;
  /**
   * Its level as read from the budget's count numbered `levelsOf` (_Budget.#levelOf; 0: never read). A number, not
   * the count itself: each owner gone quiet kept the count it last read alive, 16 bytes per owner counted (4,096
   * principals, one listener each: up to 134 MB, none of it charged).
   */
  level: number;
  levelsOf: number;
  readonly accounts: Set<ListenerAccount>;
  readonly pool: BudgetPool;
}

/** A new owner's record, with its pool. */
export function ownerOf(budget: PoolBudget): Owner {
  const record: Omit<Owner, "pool"> & { pool?: BudgetPool } = {
    used: 0,
    counted: 0,
    level: 0,
    levelsOf: 0,
    accounts: new Set(),
  };
  record.pool = new _Pool(budget, record as Owner);
  return record as Owner;
}

// Has `owner`'s accounts drop `bytes` between them, each its part in turn (so
// no one listener loses everything); an account that dropped goes last next
// time. Returns the bytes given back.
export function dropFrom(owner: Owner, bytes: number): number {
  let left = bytes, accounts = owner.accounts.size;
  for (const a of [...owner.accounts]) {
    if (left <= 0) break;
    const dropped = a.dropBytes(Math.ceil(left / accounts--));
    if (dropped === 0) continue;
    left -= dropped;
    owner.accounts.delete(a);
    owner.accounts.add(a);
  }
  return bytes - left;
}

// The hot path (a charge per queued exit per listener): a few additions and
// comparisons on objects every listener of the owner shares.
class _Pool implements BudgetPool {
  readonly #budget: PoolBudget;
  /** The owner's total. */
  readonly #owner: Owner;

  constructor(budget: PoolBudget, owner: Owner) {
    this.#budget = budget;
    this.#owner = owner;
  }

  fits(bytes: number): boolean {
    const b = this.#budget, total = b.used + bytes, mine = this.#owner.used + bytes;
    return total <= b.limit && mine <= b.ownerLimit && (total <= b.unreserved || mine <= b.reserveSlice);
  }

  tryCharge(bytes: number): boolean {
    if (!this.fits(bytes)) return false;
    this.charge(bytes);
    return true;
  }

  claim(bytes: number): boolean {
    return this.tryCharge(bytes) || this.#budget.claim(this.#owner, bytes);
  }

  canClaim(bytes: number): boolean {
    return this.fits(bytes) || this.#budget.mayClaim(this.#owner, bytes);
  }

  charge(bytes: number): void {
    const b = this.#budget;
    b.used += bytes;
    b.drift += bytes < 0 ? -bytes : bytes;
    this.#owner.used += bytes;
  }

  release(bytes: number): void {
    this.charge(-bytes);
  }
}
