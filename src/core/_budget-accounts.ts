/**
 * What a memory budget's holders charge through (budget.ts): the pool one
 * owner's listeners share, the account each listener has, and what a holder
 * (a queue, a retention ring) must offer to be counted in one. The budget
 * itself (room, fair shares, borrowing) is budget.ts's.
 */

/**
 * Charges the budget and one owner's share, and nothing else: what a holder
 * that counts its own bytes (a queue, a retention ring) charges through, so
 * the hot path touches only objects shared by the owner's listeners.
 */
export interface BudgetPool {
  /** Whether `bytes` more fit now (in all and in the owner's share). */
  fits(bytes: number): boolean;
  /** Charges `bytes` if they fit; false (and nothing charged) if not. */
  tryCharge(bytes: number): boolean;
  /** Charges `bytes` even past the limit: for what must exist (a loss marker keeps counts exact). */
  charge(bytes: number): void;
  /** Gives `bytes` back. */
  release(bytes: number): void;
  /**
   * Charges `bytes` as tryCharge does; when they do not fit but the owner,
   * with them, holds no more than its fair share (MemoryBudget.fairShare),
   * or than what it may borrow (MemoryBudget.borrowLevelOf) where the others'
   * drops can make the room, charges them anyway, once the owners holding
   * most over that dropped their oldest to make room (budget.ts's module
   * comment): a queued exit, or a retained one (an owner's retention counts
   * toward its fair share as its queues do).
   */
  claim(bytes: number): boolean;
  /**
   * Whether claim(bytes) would charge them (they fit, or the owner would hold no more than its fair share, or than
   * what it may borrow where the others' drops can make the room), dropping nothing: a holder gives up its own
   * until it would, and no further.
   */
  canClaim(bytes: number): boolean;
}

/** Something that charges an account's pool and counts its own bytes (see BudgetAccount.attach). */
export interface BudgetHolder {
  /** Bytes it holds now, charged through the pool. */
  readonly bytes: number;
  /** Its account closed and gave its bytes back: it charges nothing more (its pool refuses everything). */
  detachBudget(): void;
  /** Bytes it could give back by dropping what it holds (what it must keep, such as a loss marker, excluded). */
  readonly droppable: number;
  /** Drops what it holds, oldest first, until it gave back `bytes` or has nothing left to drop; returns the bytes given back. */
  dropBytes(bytes: number): number;
}

/**
 * What one listener holds: its own charges (fixed costs, the batch in
 * flight) plus those of the holders attached to it (its queue, its
 * retention). Closing it gives everything back.
 */
export interface BudgetAccount extends BudgetPool {
  readonly owner: string;
  /** Bytes this account holds now, its holders' included. */
  readonly bytes: number;
  /** The pool its holders charge through. */
  readonly pool: BudgetPool;
  /** Counts `holder`'s bytes in this account, and gives them back on close. */
  attach(holder: BudgetHolder): void;
  /** Takes over `bytes` a holder already charged (and stopped counting): they are this account's own now. */
  adopt(bytes: number): void;
  /** Gives everything back; the account and its holders charge nothing after. */
  close(): void;
  readonly closed: boolean;
}

/** A pool that refuses everything: what a holder charges once its account is closed. */
export const CLOSED_POOL: BudgetPool = Object.freeze({
  fits: () => false,
  tryCharge: () => false,
  claim: () => false,
  canClaim: () => false,
  charge: () => {},
  release: () => {},
});

/** One listener's account: its own charges and its holders', through its owner's pool (MemoryBudget.open). */
export class ListenerAccount implements BudgetAccount {
  readonly owner: string;
  /** Its own charges (its holders' not included). */
  #own = 0;
  closed = false;
  #pool: BudgetPool;
  readonly #holders: BudgetHolder[] = [];
  readonly #onClose: () => void;

  constructor(owner: string, pool: BudgetPool, onClose: () => void) {
    this.owner = owner;
    this.#pool = pool;
    this.#onClose = onClose;
  }

  get pool(): BudgetPool {
    return this.#pool;
  }

  get bytes(): number {
    let bytes = this.#own;
    for (const h of this.#holders) bytes += h.bytes;
    return bytes;
  }

  attach(holder: BudgetHolder): void {
    if (this.closed) holder.detachBudget();
    else this.#holders.push(holder);
  }

  fits(bytes: number): boolean {
    return this.#pool.fits(bytes);
  }

  tryCharge(bytes: number): boolean {
    if (!this.#pool.tryCharge(bytes)) return false;
    this.#own += bytes;
    return true;
  }

  claim(bytes: number): boolean {
    if (!this.#pool.claim(bytes)) return false;
    this.#own += bytes;
    return true;
  }

  canClaim(bytes: number): boolean {
    return this.#pool.canClaim(bytes);
  }

  /** What its holders could drop. */
  get droppable(): number {
    let bytes = 0;
    for (const h of this.#holders) bytes += h.droppable;
    return bytes;
  }

  /** Has its holders drop `bytes` in all, in the order they were attached (a listener's retention before its queue). */
  dropBytes(bytes: number): number {
    let dropped = 0;
    for (const h of this.#holders) if (dropped < bytes) dropped += h.dropBytes(bytes - dropped);
    return dropped;
  }

  charge(bytes: number): void {
    this.#pool.charge(bytes);
    if (!this.closed) this.#own += bytes;
  }

  release(bytes: number): void {
    this.#pool.release(bytes);
    if (!this.closed) this.#own -= bytes;
  }

  adopt(bytes: number): void {
    if (!this.closed) this.#own += bytes;
  }

  close(): void {
    if (this.closed) return;
    this.#pool.release(this.bytes);
    for (const h of this.#holders.splice(0)) h.detachBudget();
    this.#own = 0;
    this.#pool = CLOSED_POOL;
    this.closed = true;
    this.#onClose();
  }
}
