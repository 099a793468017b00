/**
 * The per-CPU listener table: kernel/taskstats.c keeps a `listener_array`
 * per CPU and, when a task exits on CPU c, walks only c's list. Delivering
 * an exit therefore costs O(listeners on that CPU), never O(all listeners).
 * Pure: no I/O; generic over what a listener is.
 */

/** Which CPUs gained their first or lost their last listener. */
export interface DemandChange {
  readonly added: readonly number[];
  readonly removed: readonly number[];
}

/** Per-CPU lists of listeners. */
export interface ListenerTable<L> {
  /** Adds `listener` to each CPU's list; a CPU it is on already is a no-op (the kernel checks "exists"). */
  add(listener: L, cpus: readonly number[]): DemandChange;
  /** Removes `listener` from each CPU's list; CPUs it is not on are ignored. */
  remove(listener: L, cpus: readonly number[]): DemandChange;
  /** The listeners of one CPU, in registration order. Do not mutate. */
  on(cpu: number): readonly L[];
  /** CPUs with at least one listener, sorted. */
  watched(): number[];
  /** The CPUs `listener` is on, sorted. */
  cpusOf(listener: L): number[];
}

/** Creates an empty table for CPUs 0..nbits-1. */
export function createListenerTable<L>(nbits: number): ListenerTable<L> {
  if (!Number.isInteger(nbits) || nbits < 1) throw new RangeError(`nbits must be a positive integer, got ${nbits}`);
  return new _ListenerTable<L>(nbits);
}

const EMPTY: readonly never[] = Object.freeze([]);

class _ListenerTable<L> implements ListenerTable<L> {
  readonly #lists: (L[] | undefined)[];
  readonly #cpus = new Map<L, Set<number>>();

  constructor(nbits: number) {
    this.#lists = new Array<L[] | undefined>(nbits);
  }

  add(listener: L, cpus: readonly number[]): DemandChange {
    const mine = this.#cpus.get(listener) ?? new Set<number>();
    this.#cpus.set(listener, mine);
    const added: number[] = [];
    for (const cpu of cpus) {
      this.#check(cpu);
      if (mine.has(cpu)) continue;
      mine.add(cpu);
      const list = (this.#lists[cpu] ??= []);
      if (list.length === 0) added.push(cpu);
      list.push(listener);
    }
    return { added, removed: [] };
  }

  remove(listener: L, cpus: readonly number[]): DemandChange {
    const mine = this.#cpus.get(listener);
    const removed: number[] = [];
    if (mine === undefined) return { added: [], removed };
    for (const cpu of cpus) {
      if (!mine.delete(cpu)) continue;
      const list = this.#lists[cpu]!;
      list.splice(list.indexOf(listener), 1);
      if (list.length === 0) removed.push(cpu);
    }
    if (mine.size === 0) this.#cpus.delete(listener);
    return { added: [], removed };
  }

  on(cpu: number): readonly L[] {
    return this.#lists[cpu] ?? EMPTY;
  }

  watched(): number[] {
    const out: number[] = [];
    this.#lists.forEach((list, cpu) => {
      if (list !== undefined && list.length > 0) out.push(cpu);
    });
    return out;
  }

  cpusOf(listener: L): number[] {
    return [...(this.#cpus.get(listener) ?? [])].sort((a, b) => a - b);
  }

  #check(cpu: number): void {
    if (!Number.isInteger(cpu) || cpu < 0 || cpu >= this.#lists.length) {
      throw new RangeError(`CPU ${cpu} is outside 0-${this.#lists.length - 1}`);
    }
  }
}
