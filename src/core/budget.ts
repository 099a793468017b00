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
 *
 * The reserve alone is defeated by owners acting together: each takes its
 * slice while the slices shrink, and charges that must be made past the
 * budget (loss markers, batches in flight, shared slabs) fill what is left.
 * So an owner holding less than its fair share (the budget less the reserve,
 * over the owners) is never refused a queued or retained exit: when the
 * budget has no room, the owners holding most over their fair share drop
 * their oldest (retained ones first; a queue's become exact loss markers)
 * to make it. What they hold over it and cannot drop (a stalled stream's
 * batch in flight) is what the budget lets pass its limit anyway, and the
 * owner under its fair share is charged past the limit by as much: all
 * owners together then hold at most the budget less the reserve plus what
 * cannot be dropped. Nobody is taken below its
 * fair share, so owners do not take room back and forth. Measured before:
 * twelve owners whose streams never read, joining one after another, made a
 * thirteenth's reading stream lose half of its exits.
 *
 * An even split counts an owner holding only a listener's fixed cost as if
 * it held a whole share, so many small owners shrank everyone's: 50 of them
 * made a reading owner's share a 52nd of the budget, and it lost 286 of 300
 * exits to an owner whose stream never read. So an owner may also borrow,
 * past its fair share, what owners holding less than theirs leave, up to
 * its max-min level (_fair-levels.ts): room made under the budget less the
 * reserve (the server's seven eighths) by the drops of owners holding more
 * than that level, never past the limit, so the bound above stands.
 */

import { type BudgetAccount, type BudgetPool, ListenerAccount } from "./_budget-accounts.ts";
import { FairLevels } from "./_fair-levels.ts";
import { dropFrom, type Owner, ownerOf, type PoolBudget } from "./_budget-pool.ts";
import { type BudgetOptions, type MemoryBudget, resolveShare } from "./_budget-types.ts";

export type { BudgetAccount, BudgetHolder, BudgetPool } from "./_budget-accounts.ts";
export { CLOSED_POOL } from "./_budget-accounts.ts";
export type { BudgetOptions, MemoryBudget, Share } from "./_budget-types.ts";
export { resolveShare } from "./_budget-types.ts";

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
  _unbudgeted ??= ownerOf(new _Budget(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, 0)).pool;
  return new ListenerAccount(owner, _unbudgeted, () => {});
}

/**
 * What a claim that takes room frees beyond its need, as a part of the
 * budget: one claim then makes room for many exits (256 KiB of a 64 MiB
 * budget, some 100 of the server's exits at ~2.5 KB each with their shares
 * of slabs), not one scan of the owners per exit.
 */
const CLAIM_SLACK = 1 / 256;

/**
 * How long a scan that found too little to drop is trusted: claims past the
 * budget then charge without scanning again (every account of every owner
 * over its fair share: 6-9% of the server's time when each exit scanned).
 * Past the budget, owners over their fair share cannot charge, so what they
 * could drop grows only as owners come and go (which scans again at once).
 */
const DRY_MS = 10;

/**
 * How much may be charged and given back, as a part of the budget, before
 * fair shares are counted again from what each owner holds: counting sorts
 * the owners, and a claim past the budget (one per queued exit per
 * listener) asks its owner's share. A share is then off by at most this
 * part of the budget (256 KiB of 64 MiB) and LEVELS_DRIFT_PER_OWNER bytes
 * per owner. An owner coming or going counts as LEVELS_DRIFT_PER_OWNER
 * bytes too, besides what it charges and gives back: counted again at once,
 * 1,000 owners were sorted again at 755 of 2,000 claims while principals
 * came and went one per exit. Until then one come since is judged as not
 * counted and holding nothing (what it charged since is drift), and one gone
 * as holding what it held when counted (given back: drift too); an owner
 * holding nothing moves no level.
 */
const LEVELS_DRIFT = 1 / 256;

/**
 * Bytes per owner added to LEVELS_DRIFT, so that counting n owners (a sort,
 * ~150 us for 4,096 of them) is paid for by some n / 10 exits' charges, not
 * a few: a small budget shared by thousands of owners would otherwise count
 * again at almost every claim.
 */
const LEVELS_DRIFT_PER_OWNER = 256;

class _Budget implements MemoryBudget, PoolBudget {
  readonly limit: number;
  readonly ownerLimit: number;
  readonly reserve: number;
  /** limit - reserve: what any owner may fill. */
  readonly unreserved: number;
  reserveSlice: number;
  used = 0;
  readonly #owners = new Map<string, Owner>();
  /**
   * Until when the last scan for room within a fair share is trusted to have found too little (Date.now() ms; see
   * DRY_MS). Then a scan for borrowed room finds too little as well: it counts only what owners hold over a level
   * at least the fair share, against a greater need (room under the budget less the reserve, not under the limit).
   */
  #dryUntil = 0;
  /**
   * The same for a scan for borrowed room, trusted only by borrows up to a level at least #dryLevel: what owners
   * hold over a lower level is more. Never trusted within a fair share: a borrow's scan finding too little says
   * nothing of what owners hold over their fair share, and an owner under its own trusting it was charged past the
   * limit while others held droppable exits over theirs (a borrower refused at each of its exits kept it so).
   */
  #dryBorrowUntil = 0;
  #dryLevel = 0;
  /**
   * What that scan found to drop: a borrow needing no more scans again (a holder that gave up some of its own to
   * fit, BudgetPool.canClaim, needs less than the claim that was refused).
   */
  #dryFound = 0;
  /** Fair shares as last counted (see LEVELS_DRIFT), and how many times they were (Owner.levelsOf). */
  #levels: FairLevels | undefined;
  #counts = 0;
  /** Bytes charged and given back since they were counted. */
  drift = 0;

  constructor(limit: number, ownerLimit: number, reserve: number) {
    this.limit = limit;
    this.ownerLimit = ownerLimit;
    this.reserve = reserve;
    this.unreserved = limit - reserve;
    this.reserveSlice = reserve;
  }

  get fairShare(): number {
    return this.#fairShare(this.#owners.size);
  }

  fairShareOf(owner: string): number {
    return this.#fairShareOf(this.#owners.get(owner));
  }

  borrowLevelOf(owner: string): number {
    return this.#levelOf(this.#owners.get(owner));
  }

  usedBy(owner: string): number {
    return this.#owners.get(owner)?.used ?? 0;
  }

  refusal(owner: string, bytes: number): "budget" | "owner" | "reserve" | undefined {
    const refused = this.#refusal(owner, bytes);
    if (refused === undefined || refused === "owner") return refused;
    return this.#room(this.#owners.get(owner), bytes) === undefined ? refused : undefined;
  }

  // Why `bytes` more for `owner` do not fit the ordinary way, fair shares aside.
  #refusal(owner: string, bytes: number): "budget" | "owner" | "reserve" | undefined {
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

  makeRoom(owner: string, bytes: number): boolean {
    if (this.#refusal(owner, bytes) === undefined) return true;
    const room = this.#room(this.#owners.get(owner), bytes);
    if (room === undefined) return false;
    this.#take(room, Math.min(room.droppable, room.need));
    return true;
  }

  /**
   * Whether claim(bytes) for `o` would charge them, dropping nothing to find out (BudgetPool.canClaim, asked when
   * they do not fit): within its fair share, or past it within what it may borrow where the others' drops can make
   * the room under the budget less the reserve, as claim finds it. Asking only whether they fit under the budget
   * less the reserve (no more than fits() asks) had a reader at its level whose level fell give up a reserve's
   * worth of what it retained for a resume, 10,000 bytes of a 100,000 budget, where claim would have borrowed after
   * 5,000 from an owner over it.
   */
  mayClaim(o: Owner, bytes: number): boolean {
    const mine = o.used + bytes;
    if (mine > this.ownerLimit) return false;
    return mine <= this.#fairShareOf(o) || this.#room(o, bytes) !== undefined;
  }

  /**
   * Charges `o` for `bytes` through its fair share or what it may borrow (#room): false (changing nothing) when `o`
   * would hold more than either lets it.
   */
  claim(o: Owner, bytes: number): boolean {
    const room = this.#room(o, bytes);
    if (room === undefined) return false;
    if (room.need > 0) this.#take(room, Math.min(room.droppable, room.need + Math.ceil(this.limit * CLAIM_SLACK)));
    this.used += bytes;
    this.drift += bytes;
    o.used += bytes;
    return true;
  }

  open(owner: string): BudgetAccount {
    let o = this.#owners.get(owner);
    if (o === undefined) {
      this.#owners.set(owner, o = ownerOf(this));
      this.#slice();
    }
    const owned = o;
    const account = new ListenerAccount(owner, owned.pool, () => {
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
    this.#dryUntil = this.#dryBorrowUntil = 0; // fair shares changed: what owners over theirs could drop too
    this.drift += LEVELS_DRIFT_PER_OWNER; // and the levels a little (LEVELS_DRIFT)
  }

  // The fair share `o` is judged by (undefined: an owner not counted yet, judged with itself counted).
  #fairShareOf(o: Owner | undefined): number {
    return this.#fairShare(this.#owners.size + (o === undefined ? 1 : 0));
  }

  #fairShare(owners: number): number {
    return Math.floor(this.unreserved / Math.max(1, owners));
  }

  // What `o` (undefined: an owner not counted yet, judged with itself counted) may hold by borrowing: its max-min
  // level (_fair-levels.ts), never less than its fair share. An owner's level is read once per count: it depends on
  // the count and on what the owner held when counted, neither of which changes until the next. Read at each claim,
  // a full budget's refusals (three a queued exit, per listener over its level) spent a quarter of the time the sim
  // and 17 listeners took per exit searching for the same level (and 45% in the claim path).
  #levelOf(o: Owner | undefined): number {
    if (this.#owners.size === 0 || (o !== undefined && this.#owners.size === 1)) return this.unreserved;
    const levels = this.#counted();
    if (o === undefined) return levels.levelOf(undefined);
    if (o.levelsOf !== this.#counts) {
      o.level = levels.levelOf(o.counted);
      o.levelsOf = this.#counts;
    }
    return o.level;
  }

  #counted(): FairLevels {
    const drift = this.limit * LEVELS_DRIFT + this.#owners.size * LEVELS_DRIFT_PER_OWNER;
    if (this.#levels !== undefined && this.drift <= drift) return this.#levels;
    const held: number[] = [];
    for (const o of this.#owners.values()) held.push(o.counted = Math.max(0, o.used));
    this.drift = 0;
    this.#counts++;
    return this.#levels = new FairLevels(held, this.unreserved);
  }

  /**
   * Whether `bytes` more for `o` (undefined: an owner not counted yet) may be
   * had, and from whom: undefined when `o` would hold more than its own
   * limit, or than its fair share and what it may borrow; otherwise the bytes
   * to make room for (need; 0 or less when they fit) and the owners holding
   * more than `o` may (its fair share, or what it borrows) with what each
   * can drop of that, most first.
   *
   * Within its fair share, room is made under the budget's limit, and what
   * the others hold over theirs and cannot drop (batches in flight, shared
   * slabs, fixed costs) is what the budget lets pass its limit: all owners
   * together hold at most their fair shares plus that. Past its fair share,
   * what `o` borrows is room under the budget less the reserve that the
   * others' drops make, never past the limit: charged past it, owners that
   * borrowed one after another, each up to the level the others left it,
   * would pass the limit together by more than the even split lets them (an
   * attack of 340 never-read streams could not tell the two apart: its peak
   * read 100-115% with either, run to run).
   */
  #room(o: Owner | undefined, bytes: number): _Room | undefined {
    const mine = (o?.used ?? 0) + bytes;
    if (mine > this.ownerLimit) return undefined;
    const share = this.#fairShareOf(o), within = mine <= share;
    const fair = within ? share : this.#levelOf(o);
    if (mine > fair) return undefined;
    const need = this.used + bytes - (within ? this.limit : this.unreserved);
    const from: [Owner, number][] = [];
    let droppable = 0;
    const scan = need > 0 && this.#mayScan(within, fair, need);
    for (const other of scan ? this.#owners.values() : []) {
      if (other === o || other.used <= fair) continue;
      let could = 0;
      for (const a of other.accounts) could += a.droppable;
      could = Math.min(could, other.used - fair);
      if (could > 0) from.push([other, could]);
      droppable += could;
    }
    if (scan) this.#scanned(within, fair, droppable < need, droppable);
    if (!within && need > droppable) return undefined;
    from.sort((a, b) => b[0].used - a[0].used);
    return { need, droppable, fair, from };
  }

  // Whether a scan for `need` bytes of room over `fair` (within a fair share, or a level borrowed up to) may find
  // enough: false while one that would have found more was trusted to have found too little (DRY_MS).
  #mayScan(within: boolean, fair: number, need: number): boolean {
    if (this.#dryUntil === 0 && this.#dryBorrowUntil === 0) return true;
    const now = Date.now();
    if (this.#dryUntil !== 0 && now < this.#dryUntil) return false;
    if (within || this.#dryBorrowUntil === 0 || now >= this.#dryBorrowUntil) return true;
    return fair < this.#dryLevel || need <= this.#dryFound;
  }

  // Notes what a scan over `fair` found to drop (`found`): too little (`dry`), or enough.
  #scanned(within: boolean, fair: number, dry: boolean, found: number): void {
    const until = dry ? Date.now() + DRY_MS : 0;
    if (within) this.#dryUntil = until;
    else {
      this.#dryBorrowUntil = until;
      this.#dryLevel = fair;
      this.#dryFound = found;
    }
  }

  // Has the owners of `room` drop `bytes` in all, most first, none below its fair share.
  #take(room: _Room, bytes: number): void {
    let left = bytes;
    for (const [owner, could] of room.from) {
      if (left <= 0) break;
      left -= dropFrom(owner, Math.min(left, could, owner.used - room.fair));
    }
  }
}

/** Room found for a claim (see _Budget.#room). */
interface _Room {
  readonly need: number;
  /** What the owners in `from` can drop, in all. */
  readonly droppable: number;
  readonly fair: number;
  /** Owners over their fair share, most first, with what each can drop. */
  readonly from: readonly (readonly [Owner, number])[];
}
