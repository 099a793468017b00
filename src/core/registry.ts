/**
 * The listener registry: owns the per-CPU listener table, feeds it from a
 * source of exit records, tells the source which CPUs are watched, and
 * removes listeners whose stream has been gone longer than their lease
 * (`reap`, which housekeeping.ts runs on a timer: the kernel's lazy cleanup
 * of dead listeners, done on time). Generic over the record (R) and what
 * listeners retain of it (P); it knows no protocol.
 *
 * Every listener charges one memory budget (budget.ts) for what it holds;
 * the registry charges each its fixed cost and refuses a new listener when
 * the budget, or its owner's share, has no room for one.
 */
import { formatCpulist } from "../kernel/cpulist.ts";
import { createListenerTable, type DemandChange, type ListenerTable } from "../kernel/listener-table.ts";
import { SlabLedger } from "./_slab-ledger.ts";
import { createMemoryBudget, type MemoryBudget } from "./budget.ts";
import type { CpuRecord } from "./event-queue.ts";
import { LimitExceededError, ListenerNotFoundError } from "./errors.ts";
import { type Limits, resolveLimits } from "./limits.ts";
import { Listener } from "./listener.ts";
import { type LossCounters, noLosses, type StreamEnd } from "./listener-options.ts";
import { memoryRefusal, stalledWhy } from "./_memory-refusals.ts";

export type {
  DeliveryFailure,
  ExitFeed,
  ExitSink,
  NewListener,
  RegistryMemory,
  RegistryOptions,
  RegistryStats,
} from "./_registry-types.ts";
export { CPU_ENTRY_BYTES, LISTENER_BYTES } from "./_registry-types.ts";
import {
  CPU_ENTRY_BYTES,
  type ExitFeed,
  type ExitSink,
  LISTENER_BYTES,
  type NewListener,
  type RegistryMemory,
  type RegistryOptions,
  type RegistryStats,
} from "./_registry-types.ts";

/** The registry. */
export interface ListenerRegistry<R extends CpuRecord = CpuRecord, P = unknown> {
  readonly limits: Readonly<Limits>;
  /** The memory budget listeners charge. */
  readonly budget: MemoryBudget;
  /**
   * Creates a listener on `cpus`; LimitExceededError when the server holds
   * maxListeners, or the memory budget (or the owner's share) has no room for
   * a listener's fixed cost.
   */
  create(cpus: readonly number[], o: NewListener<R>): Listener<R, P>;
  /** Adds CPUs to a listener (a CPU it has already is a no-op). */
  add(listener: Listener<R, P>, cpus: readonly number[]): void;
  /** Removes CPUs; a listener left with none is removed. Returns the CPUs left. */
  removeCpus(listener: Listener<R, P>, cpus: readonly number[]): number[];
  /** Removes a listener entirely and ends its stream (after its queue, unless `how` says at once). */
  remove(listener: Listener<R, P>, why: string, how?: StreamEnd): void;
  /**
   * The listener with this id; ListenerNotFoundError when there is none, or
   * when `owner` is given and is not its owner (exactly as if it did not exist).
   */
  get(id: string, owner?: string): Listener<R, P>;
  cpusOf(listener: Listener<R, P>): number[];
  /** Canonical cpulist of a listener's CPUs. */
  cpumaskOf(listener: Listener<R, P>): string;
  /** Removes listeners whose lease ran out; returns how many. */
  reap(): number;
  /** Updates every listener's events/s. */
  sampleRates(): void;
  /** Charges each listener what the sealed slabs its items are in leave unpaid (the housekeeping timer, once a second). */
  settleSlabs(): void;
  /**
   * While the memory budget is past its limit, ends ("stalled") the streams
   * of principals over their fair share that have held a batch for a lease
   * (their clients read nothing, or less than a batch): the budget cannot drop a batch in flight,
   * so it is what carries the budget past its limit. Run once a second (the
   * housekeeping timer), each sweep noting the batches held; returns how
   * many streams it told.
   */
  endStalled(): number;
  stats(): RegistryStats;
  /** The live listeners, or those `owner` owns. */
  listeners(owner?: string): Listener<R, P>[];
  now(): number;
  /** Ends every stream (UNAVAILABLE: shutting down), removes every listener and closes the feed. */
  close(): Promise<void>;
}

/** Creates the registry and starts the feed into it. */
export function createRegistry<R extends CpuRecord, P>(options: RegistryOptions<R, P>): ListenerRegistry<R, P> {
  return new _Registry(options, resolveLimits(options.limits));
}

class _Registry<R extends CpuRecord, P> implements ListenerRegistry<R, P> {
  readonly limits: Readonly<Limits>;
  readonly #feed: ExitFeed<R>;
  readonly #retain: (record: R) => P;
  readonly #memory: RegistryMemory<R, P>;
  readonly #table: ListenerTable<Listener<R, P>>;
  readonly #byId = new Map<string, Listener<R, P>>();
  /** Listeners per owner, for maxListenersPerPrincipal. */
  readonly #owned = new Map<string, number>();
  readonly #now: () => number;
  readonly #onDeliveryError: RegistryOptions<R, P>["onDeliveryError"];
  /** Losses of listeners already removed, so totals never go backwards. */
  readonly #pastLost: LossCounters = noLosses();
  #stalledStreams = 0;
  /** What the slabs listeners' items keep alive cost them, counted once a second; absent: records share no slabs. */
  readonly #ledger: SlabLedger | undefined;
  /** Removed listeners whose stream still sends what they had queued: they hold it until the stream ends. */
  readonly #draining = new Set<Listener<R, P>>();

  constructor(o: RegistryOptions<R, P>, limits: Limits) {
    this.limits = limits;
    this.#feed = o.feed;
    this.#retain = o.retain;
    this.#memory = o.memory ?? { budget: createMemoryBudget(), sizeOf: () => 0, sizeOfPayload: () => 0 };
    this.#now = o.now ?? Date.now;
    this.#onDeliveryError = o.onDeliveryError;
    this.#ledger = this.#memory.slabs && new SlabLedger();
    this.#table = createListenerTable<Listener<R, P>>(o.feed.possible.nbits);
    o.feed.start(this.#sink());
  }

  get budget(): MemoryBudget {
    return this.#memory.budget;
  }

  // The one path exits take: feed -> per-CPU list -> each listener's queue.
  #sink(): ExitSink<R> {
    const table = this.#table, sizeOf = this.#memory.sizeOf, failed = this.#failed.bind(this);
    // Records in the order they were made, for the listeners' SPARSE_GAP.
    let ordinal = 0;
    return {
      exit(record: R): void {
        ordinal++;
        const listeners = table.on(record.cpu);
        if (listeners.length === 0) return;
        const bytes = sizeOf(record);
        // One listener's failure is its own: a throw here used to skip the listeners after it and reach the
        // source, which then counted the record lost for every listener of the CPU, those that had it too.
        for (const l of listeners) {
          const produced = l.produced;
          try {
            l.deliver(record, bytes, ordinal);
          } catch (err) {
            failed(l, produced, record.cpu, err);
          }
        }
      },
      kernelLoss(cpu: number, count: number): void {
        for (const l of table.on(cpu)) l.lose(count, "kernel-overflow", cpu);
      },
      sourceLoss(cpu: number, count: number): void {
        for (const l of table.on(cpu)) l.lose(count, "source-error", cpu);
      },
    };
  }

  // A listener's deliver() threw: its account is made exact again (Listener.recover) and the error told. Neither may
  // throw on to the source, which would count the record lost for every listener of the CPU.
  #failed(l: Listener<R, P>, produced: number, cpu: number, err: unknown): void {
    let lost = false, unrecovered: unknown;
    try {
      lost = l.recover(produced, cpu);
    } catch (e) {
      unrecovered = e; // its queue fails too: nothing more can be told to it
    }
    try {
      this.#onDeliveryError?.(err, { listener: l.id, cpu, lost, ...(unrecovered !== undefined && { unrecovered }) });
    } catch {
      // A failing error log must not cost the other listeners their records either.
    }
  }

  create(cpus: readonly number[], o: NewListener<R>): Listener<R, P> {
    if (this.#byId.size >= this.limits.maxListeners) {
      throw new LimitExceededError(
        `the server holds its limit of ${this.limits.maxListeners} listeners (--max-listeners); deregister unused ones or add CPUs to an existing listener`,
      );
    }
    const owned = this.#owned.get(o.owner) ?? 0;
    if (owned >= this.limits.maxListenersPerPrincipal) {
      throw new LimitExceededError(
        `principal "${o.owner}" owns its limit of ${this.limits.maxListenersPerPrincipal} listeners (--max-listeners-per-principal); deregister unused ones or add CPUs to one`,
      );
    }
    const bytes = LISTENER_BYTES + cpus.length * CPU_ENTRY_BYTES + (this.#memory.reserve ?? 0);
    // The last check: a principal under its fair share takes the room from those holding most over theirs.
    if (!this.#memory.budget.makeRoom(o.owner, bytes)) throw memoryRefusal(this.#memory.budget, o.owner, bytes);
    const capacity = Math.min(o.buffer === 0 ? this.limits.defaultBuffer : o.buffer, this.limits.maxBuffer);
    const account = this.#memory.budget.open(o.owner);
    account.charge(LISTENER_BYTES);
    const listener = new Listener<R, P>({
      id: crypto.randomUUID(),
      capacity,
      policy: o.policy,
      ephemeral: o.ephemeral,
      owner: o.owner,
      scope: o.scope,
      now: this.#now(),
      retain: this.#retain,
      account,
      sizeOfPayload: this.#memory.sizeOfPayload,
      payloadBuffer: this.#memory.payloadBuffer,
      unshare: this.#memory.unshare,
      slabs: this.#memory.slabs,
    });
    this.#byId.set(listener.id, listener);
    this.#owned.set(o.owner, owned + 1);
    this.add(listener, cpus);
    return listener;
  }

  add(listener: Listener<R, P>, cpus: readonly number[]): void {
    const had = this.#table.cpusOf(listener).length;
    this.#demand(this.#table.add(listener, cpus));
    // Bounded by the possible CPUs: charged even past the budget, like a loss marker.
    listener.account.charge((this.#table.cpusOf(listener).length - had) * CPU_ENTRY_BYTES);
  }

  removeCpus(listener: Listener<R, P>, cpus: readonly number[]): number[] {
    const had = this.#table.cpusOf(listener).length;
    this.#demand(this.#table.remove(listener, cpus));
    const left = this.#table.cpusOf(listener);
    listener.account.release((had - left.length) * CPU_ENTRY_BYTES);
    if (left.length === 0) this.remove(listener, "the listener has no CPUs left");
    return left;
  }

  remove(listener: Listener<R, P>, why: string, how: StreamEnd = "removed"): void {
    if (!this.#byId.delete(listener.id)) return;
    const owned = (this.#owned.get(listener.owner) ?? 1) - 1;
    if (owned === 0) this.#owned.delete(listener.owner);
    else this.#owned.set(listener.owner, owned);
    this.#demand(this.#table.remove(listener, this.#table.cpusOf(listener)));
    for (const k of Object.keys(this.#pastLost) as (keyof LossCounters)[]) this.#pastLost[k] += listener.lost[k];
    // A removed listener's stream still sends what was queued; what that holds stays charged until it ends.
    const draining = how === "removed" && listener.attached;
    listener.close(why, how);
    listener.retire(draining, (reason, count) => (this.#pastLost[reason] += count));
    this.#pruneDraining();
    if (!listener.closed) this.#draining.add(listener);
  }

  get(id: string, owner?: string): Listener<R, P> {
    const l = this.#byId.get(id);
    if (l === undefined || (owner !== undefined && l.owner !== owner)) throw new ListenerNotFoundError(id);
    return l;
  }

  cpusOf(listener: Listener<R, P>): number[] {
    return this.#table.cpusOf(listener);
  }

  cpumaskOf(listener: Listener<R, P>): string {
    return formatCpulist(this.#table.cpusOf(listener));
  }

  reap(): number {
    const deadline = this.#now() - this.limits.leaseMs;
    let reaped = 0;
    for (const l of this.#byId.values()) {
      if (!l.attached && l.detachedAt <= deadline) {
        this.remove(l, "lease expired");
        reaped++;
      }
    }
    return reaped;
  }

  sampleRates(): void {
    const now = this.#now();
    for (const l of this.#byId.values()) l.sampleRate(now);
  }

  settleSlabs(): void {
    if (this.#ledger === undefined) return;
    this.#pruneDraining();
    this.#ledger.settle([...this.#byId.values(), ...this.#draining]);
  }

  endStalled(): number {
    const { budget } = this.#memory;
    const past = budget.used > budget.limit;
    const now = this.#now();
    const { leaseMs } = this.limits;
    let told = 0;
    // Every sweep notes the batches held, so a stream stalled since before the budget filled is judged from then.
    for (const l of [...this.#byId.values(), ...this.#draining]) {
      const judged = past && budget.usedBy(l.owner) > budget.fairShareOf(l.owner);
      told += l.endStalled(now, leaseMs, judged ? stalledWhy(budget, l.owner, leaseMs) : undefined);
    }
    this.#stalledStreams += told;
    return told;
  }

  // Forgets removed listeners whose last stream has gone (they gave everything back).
  #pruneDraining(): void {
    for (const l of this.#draining) if (l.closed) this.#draining.delete(l);
  }

  stats(): RegistryStats {
    const lost = { ...this.#pastLost };
    let streams = 0, queued = 0, deepestQueue = 0;
    for (const l of this.#byId.values()) {
      if (l.attached) streams++;
      queued += l.queue.depth;
      deepestQueue = Math.max(deepestQueue, l.queue.depth);
      for (const k of Object.keys(lost) as (keyof LossCounters)[]) lost[k] += l.lost[k];
    }
    const watchedCpus = formatCpulist(this.#table.watched());
    const { used: memoryUsed, limit: memoryBudget } = this.#memory.budget;
    let memorySlabs = 0;
    for (const l of this.#byId.values()) memorySlabs += l.slabBytes;
    for (const l of this.#draining) memorySlabs += l.slabBytes;
    return {
      listeners: this.#byId.size,
      streams,
      watchedCpus,
      lost,
      queued,
      deepestQueue,
      memoryUsed,
      memorySlabs,
      memoryBudget,
      stalledStreams: this.#stalledStreams,
    };
  }

  listeners(owner?: string): Listener<R, P>[] {
    const all = [...this.#byId.values()];
    return owner === undefined ? all : all.filter((l) => l.owner === owner);
  }

  now(): number {
    return this.#now();
  }

  async close(): Promise<void> {
    for (const l of [...this.#byId.values()]) {
      this.remove(l, "the server is shutting down; reconnect later", "shutdown");
    }
    await this.#feed.close();
  }

  #demand(change: DemandChange): void {
    if (change.added.length > 0) this.#feed.watch(change.added, true);
    if (change.removed.length > 0) this.#feed.watch(change.removed, false);
  }
}
