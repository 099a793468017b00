/**
 * A server-wide memory budget in bytes for everything held per client
 * (queued exits, retained events, in-flight batches, loss markers, each
 * listener's fixed cost), with per-owner accounting and an optional cap on
 * one owner's share. Listener counts and queue sizes bound nothing real on
 * their own: a few hundred listeners that never read, each with a queue of a
 * million events, hold gigabytes. A charge that does not fit is refused, and
 * the caller drops what it would have held (a queue drops the exit with a
 * loss marker; retention keeps fewer items; the registry refuses a listener).
 *
 * The budget only counts what callers tell it: the core cannot look inside a
 * record, so the owner of the records says what each costs.
 *
 * A reserve keeps one owner from starving the others: past `limit - reserve`
 * only an owner holding less than its slice of the reserve (the reserve over
 * the owners holding anything) may charge. An owner whose streams never read
 * then fills the budget up to the reserve and drops its own exits, while an
 * owner that keeps up (holding a few batches) still queues. Without it, one
 * principal filled the whole budget and another's reading stream lost 81%
 * of its exits.
 */

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
  /** An account that charges `owner` (one per listener). */
  open(owner: string): BudgetAccount;
}

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
}

/** Something that charges an account's pool and counts its own bytes (see BudgetAccount.attach). */
export interface BudgetHolder {
  /** Bytes it holds now, charged through the pool. */
  readonly bytes: number;
  /** Its account closed and gave its bytes back: it charges nothing more (its pool refuses everything). */
  detachBudget(): void;
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
  charge: () => {},
  release: () => {},
});

/** Creates a budget. */
export function createMemoryBudget(o: BudgetOptions = {}): MemoryBudget {
  const limit = o.limit ?? Number.MAX_SAFE_INTEGER;
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new RangeError(`memory budget must be a positive whole number of bytes, got ${o.limit}`);
  }
  const reserve = o.reserve === undefined ? 0 : resolveShare(o.reserve, limit);
  if (reserve > limit / 2) throw new RangeError(`a memory budget's reserve may be at most half of it, got ${reserve}`);
  return new _Budget(limit, resolveShare(o.perOwner, limit), reserve);
}

// What holders made without a budget charge: unlimited, shared (so their hot
// path is the same as under a real budget), and keeping no list of accounts.
let _unbudgeted: BudgetPool | undefined;

/** An account of an unlimited budget, for a listener, queue or retention made without one: counted, never refused. */
export function unbudgeted(owner = ""): BudgetAccount {
  _unbudgeted ??= new _Pool(new _Budget(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, 0), { used: 0 });
  return new _Account(owner, _unbudgeted, () => {});
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

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

/** Parses a byte count: "67108864", "64MiB", "64M" (binary), "64MB" (decimal), "1.5GiB". */
export function parseBytes(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m === null ? undefined : UNITS[m[2]!.toLowerCase()];
  if (m === null || unit === undefined) {
    throw new RangeError(`expected a byte count such as 67108864, 64MiB or 1GiB, got ${JSON.stringify(text)}`);
  }
  const n = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`expected at least 1 byte, got ${JSON.stringify(text)}`);
  return n;
}

/** Parses a share: a percentage of the budget ("25%") or a byte count (as parseBytes). */
export function parseShare(text: string): Share {
  const m = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(text);
  if (m === null) return parseBytes(text);
  const fraction = Number(m[1]) / 100;
  if (!(fraction > 0 && fraction <= 1)) {
    throw new RangeError(`expected a percentage above 0 and at most 100, got ${JSON.stringify(text)}`);
  }
  return { fraction };
}

/** Bytes for people: "64 MiB", "1.5 GiB", "512 B". */
export function formatBytes(n: number): string {
  if (n >= Number.MAX_SAFE_INTEGER) return "unlimited";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${Number.isInteger(n) ? n : n.toFixed(1)} ${units[i]}`;
}

/** One owner's accounts, total and pool. */
interface _Owner {
  used: number;
  readonly accounts: Set<_Account>;
  readonly pool: _Pool;
}

class _Budget implements MemoryBudget {
  readonly limit: number;
  readonly ownerLimit: number;
  readonly reserve: number;
  /** limit - reserve: what any owner may fill. */
  readonly unreserved: number;
  reserveSlice: number;
  used = 0;
  readonly #owners = new Map<string, _Owner>();

  constructor(limit: number, ownerLimit: number, reserve: number) {
    this.limit = limit;
    this.ownerLimit = ownerLimit;
    this.reserve = reserve;
    this.unreserved = limit - reserve;
    this.reserveSlice = reserve;
  }

  usedBy(owner: string): number {
    return this.#owners.get(owner)?.used ?? 0;
  }

  refusal(owner: string, bytes: number): "budget" | "owner" | "reserve" | undefined {
    const total = this.used + bytes, mine = this.usedBy(owner) + bytes;
    if (total > this.limit) return "budget";
    if (mine > this.ownerLimit) return "owner";
    if (total > this.unreserved && mine > this.sliceOf(owner)) return "reserve";
    return undefined;
  }

  sliceOf(owner: string): number {
    // A new owner is not counted yet: judged by the slice it will have.
    return this.#owners.has(owner) ? this.reserveSlice : this.reserve / (this.#owners.size + 1);
  }

  open(owner: string): BudgetAccount {
    let o = this.#owners.get(owner);
    if (o === undefined) {
      const record: { used: number; accounts: Set<_Account>; pool?: _Pool } = { used: 0, accounts: new Set() };
      record.pool = new _Pool(this, record);
      this.#owners.set(owner, o = record as _Owner);
      this.#slice();
    }
    const owned = o;
    const account = new _Account(owner, owned.pool, () => {
      owned.accounts.delete(account);
      if (owned.accounts.size > 0) return;
      this.#owners.delete(owner);
      this.#slice();
    });
    owned.accounts.add(account);
    return account;
  }

  #slice(): void {
    this.reserveSlice = this.reserve / Math.max(1, this.#owners.size);
  }
}

// The hot path (a charge per queued exit per listener): a few additions and
// comparisons on objects every listener of the owner shares.
class _Pool implements BudgetPool {
  readonly #budget: _Budget;
  /** The owner's total. */
  readonly #owner: { used: number };

  constructor(budget: _Budget, owner: { used: number }) {
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

  charge(bytes: number): void {
    this.#budget.used += bytes;
    this.#owner.used += bytes;
  }

  release(bytes: number): void {
    this.charge(-bytes);
  }
}

class _Account implements BudgetAccount {
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
