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
 */

/** How much of the budget one owner may hold: a byte count, or a fraction (0-1] of the budget. */
export type Share = number | { readonly fraction: number };

/** Options of a budget. */
export interface BudgetOptions {
  /** Bytes in all; omitted: unlimited (still counted). */
  readonly limit?: number | undefined;
  /** Most one owner may hold; omitted: the whole budget. */
  readonly perOwner?: Share | undefined;
}

/** A budget shared by every listener of a server. */
export interface MemoryBudget {
  /** Bytes in all (Number.MAX_SAFE_INTEGER when unlimited). */
  readonly limit: number;
  /** Most bytes one owner may hold. */
  readonly ownerLimit: number;
  /** Bytes charged now, over all owners. */
  readonly used: number;
  /** Bytes `owner` holds now. */
  usedBy(owner: string): number;
  /** Why `bytes` more for `owner` would not fit ("budget" or "owner"), or undefined when they fit. */
  refusal(owner: string, bytes: number): "budget" | "owner" | undefined;
  /** An account that charges `owner` (one per listener). */
  open(owner: string): BudgetAccount;
}

/** What one holder (a listener) has charged; closing it gives everything back. */
export interface BudgetAccount {
  readonly owner: string;
  /** Bytes this account holds now. */
  readonly bytes: number;
  /** Whether `bytes` more would fit now (in all and in the owner's share). */
  fits(bytes: number): boolean;
  /** Charges `bytes` if they fit; false (and nothing charged) if not. */
  tryCharge(bytes: number): boolean;
  /** Charges `bytes` even past the limit: for what must exist (a loss marker keeps counts exact). */
  charge(bytes: number): void;
  /** Gives `bytes` back. */
  release(bytes: number): void;
  /** Gives everything back; the account charges nothing after (tryCharge is false, charge and release no-ops). */
  close(): void;
  readonly closed: boolean;
}

/** Creates a budget. */
export function createMemoryBudget(o: BudgetOptions = {}): MemoryBudget {
  const limit = o.limit ?? Number.MAX_SAFE_INTEGER;
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new RangeError(`memory budget must be a positive whole number of bytes, got ${o.limit}`);
  }
  return new _Budget(limit, resolveShare(o.perOwner, limit));
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

/** One owner's total, shared by its accounts. */
interface _Owner {
  used: number;
  accounts: number;
}

class _Budget implements MemoryBudget {
  readonly limit: number;
  readonly ownerLimit: number;
  used = 0;
  readonly #owners = new Map<string, _Owner>();

  constructor(limit: number, ownerLimit: number) {
    this.limit = limit;
    this.ownerLimit = ownerLimit;
  }

  usedBy(owner: string): number {
    return this.#owners.get(owner)?.used ?? 0;
  }

  refusal(owner: string, bytes: number): "budget" | "owner" | undefined {
    if (this.used + bytes > this.limit) return "budget";
    if (this.usedBy(owner) + bytes > this.ownerLimit) return "owner";
    return undefined;
  }

  open(owner: string): BudgetAccount {
    let o = this.#owners.get(owner);
    if (o === undefined) this.#owners.set(owner, (o = { used: 0, accounts: 0 }));
    o.accounts++;
    return new _Account(this, owner, o, () => {
      if (--o.accounts === 0) this.#owners.delete(owner);
    });
  }
}

// The hot path (a charge per queued exit per listener) is three additions and
// two comparisons on plain fields.
class _Account implements BudgetAccount {
  readonly owner: string;
  bytes = 0;
  closed = false;
  readonly #budget: _Budget;
  readonly #owner: _Owner;
  readonly #onClose: () => void;

  constructor(budget: _Budget, owner: string, o: _Owner, onClose: () => void) {
    this.owner = owner;
    this.#budget = budget;
    this.#owner = o;
    this.#onClose = onClose;
  }

  fits(bytes: number): boolean {
    return !this.closed && this.#budget.used + bytes <= this.#budget.limit &&
      this.#owner.used + bytes <= this.#budget.ownerLimit;
  }

  tryCharge(bytes: number): boolean {
    if (!this.fits(bytes)) return false;
    this.#add(bytes);
    return true;
  }

  charge(bytes: number): void {
    if (!this.closed) this.#add(bytes);
  }

  release(bytes: number): void {
    if (!this.closed) this.#add(-bytes);
  }

  close(): void {
    if (this.closed) return;
    this.#add(-this.bytes);
    this.closed = true;
    this.#onClose();
  }

  #add(bytes: number): void {
    this.#budget.used += bytes;
    this.#owner.used += bytes;
    this.bytes += bytes;
  }
}
