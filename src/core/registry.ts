/**
 * The listener registry: owns the per-CPU listener table, feeds it from the
 * source, tells the source which CPUs are watched, and reaps listeners whose
 * stream has been gone longer than their lease (the kernel's lazy cleanup of
 * dead listeners, done on time).
 */
import { formatCpulist } from "../kernel/cpulist.ts";
import type { ExitRecord } from "../kernel/exit-record.ts";
import { createListenerTable, type DemandChange, type ListenerTable } from "../kernel/listener-table.ts";
import type { ExitSink, TaskstatsSource } from "../sources/source.ts";
import type { OverflowPolicy } from "./event-queue.ts";
import { Listener, type LossCounters, type StreamEnd } from "./listener.ts";
import { createLoadMeter } from "../server/load.ts";
import { LimitExceededError, ListenerNotFoundError } from "../rpc/errors.ts";

/** Server-side limits and defaults. */
export interface Limits {
  /** Most listeners at once (RESOURCE_EXHAUSTED past it). */
  maxListeners: number;
  /** Queue size when a client asks for 0. */
  defaultBuffer: number;
  /** Cap on a client's requested queue size. */
  maxBuffer: number;
  /** How long a listener outlives its stream, ms. */
  leaseMs: number;
  /** Most events in one stream message. */
  maxBatch: number;
  /** Idle stream heartbeat, ms. */
  heartbeatMs: number;
}

/** Defaults chosen for a monitoring service: deep queues, short leases. */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxListeners: 4096,
  defaultBuffer: 8192,
  maxBuffer: 1 << 20,
  leaseMs: 30_000,
  maxBatch: 256,
  heartbeatMs: 15_000,
});



/** Totals for GetInfo. */
export interface RegistryStats {
  listeners: number;
  streams: number;
  watchedCpus: string;
  lost: LossCounters;
}

/** Options of the registry. */
export interface RegistryOptions {
  source: TaskstatsSource;
  limits?: Partial<Limits>;
  /** Clock in ms (tests pass a fake one). */
  now?: () => number;
}

/** The registry. */
export interface ListenerRegistry {
  readonly limits: Readonly<Limits>;
  /** Creates a listener on `cpus`. */
  create(cpus: readonly number[], o: { buffer: number; policy: OverflowPolicy; ephemeral: boolean }): Listener;
  /** Adds CPUs to a listener (a CPU it has already is a no-op). */
  add(listener: Listener, cpus: readonly number[]): void;
  /** Removes CPUs; a listener left with none is removed. Returns the CPUs left. */
  removeCpus(listener: Listener, cpus: readonly number[]): number[];
  /** Removes a listener entirely and ends its stream (after its queue, unless `how` says at once). */
  remove(listener: Listener, why: string, how?: StreamEnd): void;
  get(id: string): Listener;
  cpusOf(listener: Listener): number[];
  /** Canonical cpulist of a listener's CPUs. */
  cpumaskOf(listener: Listener): string;
  /** Reaps listeners whose lease ran out; runs on a timer too. */
  reap(): number;
  stats(): RegistryStats;
  /** Iterates the live listeners (for GetInfo and tests). */
  listeners(): IterableIterator<Listener>;
  now(): number;
  /**
   * How long a stream that just sent a partial batch waits before the next
   * one: 0 normally; 5-20 ms while the event loop is saturated, so batches
   * grow instead of the loop drowning in per-message overhead.
   */
  lingerMs(): number;
  close(): Promise<void>;
}

/** Creates the registry and starts the source into it. */
export function createRegistry(options: RegistryOptions): ListenerRegistry {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  // A lowered maxBuffer pulls the default down with it unless a default was given.
  if (options.limits?.defaultBuffer === undefined) limits.defaultBuffer = Math.min(limits.defaultBuffer, limits.maxBuffer);
  for (const [k, v] of Object.entries(limits)) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`limit ${k} must be a positive integer, got ${v}`);
  }
  if (limits.defaultBuffer > limits.maxBuffer) throw new RangeError(`defaultBuffer ${limits.defaultBuffer} exceeds maxBuffer ${limits.maxBuffer}`);
  return new _Registry(options.source, limits, options.now ?? Date.now);
}

class _Registry implements ListenerRegistry {
  readonly limits: Readonly<Limits>;
  readonly #source: TaskstatsSource;
  readonly #table: ListenerTable<Listener>;
  readonly #byId = new Map<string, Listener>();
  readonly #now: () => number;
  readonly #reaper: ReturnType<typeof setInterval>;
  readonly #sampler: ReturnType<typeof setInterval>;
  readonly #load = createLoadMeter();
  /** Losses of listeners already removed, so totals never go backwards. */
  readonly #pastLost: LossCounters = { "subscriber-overflow": 0, "kernel-overflow": 0, retention: 0, restart: 0 };

  constructor(source: TaskstatsSource, limits: Limits, now: () => number) {
    this.limits = limits;
    this.#source = source;
    this.#now = now;
    this.#table = createListenerTable<Listener>(source.possible.nbits);
    source.start(this.#sink());
    this.#reaper = setInterval(() => this.reap(), Math.max(50, Math.floor(limits.leaseMs / 4)));
    (this.#reaper as { unref?: () => void }).unref?.();
    this.#sampler = setInterval(() => {
      const now = this.#now();
      for (const l of this.#byId.values()) l.sampleRate(now);
    }, 1000);
    (this.#sampler as { unref?: () => void }).unref?.();
  }

  // The one path exits take: source -> per-CPU list -> each listener's queue.
  #sink(): ExitSink {
    const table = this.#table;
    return {
      exit(record: ExitRecord): void {
        for (const l of table.on(record.cpu)) l.deliver(record);
      },
      kernelLoss(cpu: number, count: number): void {
        for (const l of table.on(cpu)) l.lose(count, "kernel-overflow", cpu);
      },
    };
  }

  create(cpus: readonly number[], o: { buffer: number; policy: OverflowPolicy; ephemeral: boolean }): Listener {
    if (this.#byId.size >= this.limits.maxListeners) {
      throw new LimitExceededError(`the server holds its limit of ${this.limits.maxListeners} listeners; deregister unused ones or add CPUs to an existing listener`);
    }
    const capacity = Math.min(o.buffer === 0 ? this.limits.defaultBuffer : o.buffer, this.limits.maxBuffer);
    const listener = new Listener({ id: crypto.randomUUID(), capacity, policy: o.policy, ephemeral: o.ephemeral, now: this.#now() });
    this.#byId.set(listener.id, listener);
    this.add(listener, cpus);
    return listener;
  }

  add(listener: Listener, cpus: readonly number[]): void {
    this.#demand(this.#table.add(listener, cpus));
  }

  removeCpus(listener: Listener, cpus: readonly number[]): number[] {
    this.#demand(this.#table.remove(listener, cpus));
    const left = this.#table.cpusOf(listener);
    if (left.length === 0) this.remove(listener, "the listener has no CPUs left");
    return left;
  }

  remove(listener: Listener, why: string, how: StreamEnd = "removed"): void {
    if (!this.#byId.delete(listener.id)) return;
    this.#demand(this.#table.remove(listener, this.#table.cpusOf(listener)));
    for (const k of Object.keys(this.#pastLost) as (keyof LossCounters)[]) this.#pastLost[k] += listener.lost[k];
    listener.close(why, how);
  }

  get(id: string): Listener {
    const l = this.#byId.get(id);
    if (l === undefined) throw new ListenerNotFoundError(id);
    return l;
  }

  cpusOf(listener: Listener): number[] {
    return this.#table.cpusOf(listener);
  }

  cpumaskOf(listener: Listener): string {
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

  stats(): RegistryStats {
    const lost = { ...this.#pastLost };
    let streams = 0;
    for (const l of this.#byId.values()) {
      if (l.attached) streams++;
      for (const k of Object.keys(lost) as (keyof LossCounters)[]) lost[k] += l.lost[k];
    }
    return { listeners: this.#byId.size, streams, watchedCpus: formatCpulist(this.#table.watched()), lost };
  }

  listeners(): IterableIterator<Listener> {
    return this.#byId.values();
  }

  now(): number {
    return this.#now();
  }

  lingerMs(): number {
    const u = this.#load.utilization;
    return u >= 0.9 ? 20 : u >= 0.75 ? 5 : 0;
  }

  async close(): Promise<void> {
    clearInterval(this.#reaper);
    clearInterval(this.#sampler);
    this.#load.close();
    for (const l of [...this.#byId.values()]) this.remove(l, "the server is shutting down; reconnect later", "shutdown");
    await this.#source.close();
  }

  #demand(change: DemandChange): void {
    if (change.added.length > 0) this.#source.watch(change.added, true);
    if (change.removed.length > 0) this.#source.watch(change.removed, false);
  }
}
