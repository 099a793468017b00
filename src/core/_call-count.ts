/**
 * Calls under way, counted per key and in all against two limits: how many
 * requests (and their responses) a caller makes the server hold at once.
 * Admission keeps two of these: one for callers with credentials and one,
 * smaller, for requests whose credentials failed, so that callers without a
 * token cannot take the share of those with one.
 */
import { KeyedCount } from "./keyed-count.ts";

/** The limits of one count, and the flags that set them (for the refusals' messages). */
export interface CallCountLimits {
  readonly perKey: number;
  readonly total: number;
  /** What a key is, in a refusal: "principal", "address". */
  readonly who: string;
  /** Whose calls the total counts, in a refusal: "" (everyone's), or " from callers without valid credentials". */
  readonly among?: string | undefined;
  /** The flags setting each limit (undefined: not settable). */
  readonly perKeyFlag?: string | undefined;
  readonly totalFlag?: string | undefined;
}

/** One count of calls under way. */
export class CallCount {
  readonly limits: CallCountLimits;
  readonly #count = new KeyedCount();

  constructor(limits: CallCountLimits) {
    this.limits = limits;
  }

  /** Counts one call of `key` until the returned function is called (once). */
  hold(key: string): () => void {
    return this.#count.hold(key);
  }

  /** Why a call of `key` (already held) is over a limit; undefined within them. */
  refusal(key: string): string | undefined {
    const mine = this.#count.of(key);
    const { perKey, total, who } = this.limits;
    if (mine > perKey) {
      return `${who} "${key}" has ${mine - 1} calls under way, its limit${flag(this.limits.perKeyFlag)}: ` +
        "a call lasts until its response is read; read the responses of the calls already made, or make fewer at once";
    }
    // A key with one call under way (this one) is not refused for the total: every caller keeps that much (a load
    // balancer's /healthz probe among a crowd of others, say); the overshoot is one call per key, and keys are
    // bounded by the connections.
    if (this.#count.total > total && mine > 1) {
      return `the server has ${this.#count.total - 1} calls under way${this.limits.among ?? ""}, its limit${
        flag(this.limits.totalFlag)
      }; retry in a second`;
    }
    return undefined;
  }

  /** Whether `key`'s calls (or all) are past twice a limit: its refusals are not being read either. */
  flooding(key: string): boolean {
    const mine = this.#count.of(key);
    return mine > 2 * this.limits.perKey || (this.#count.total > 2 * this.limits.total && mine > 1);
  }
}

function flag(name: string | undefined): string {
  return name === undefined ? "" : ` (${name})`;
}
