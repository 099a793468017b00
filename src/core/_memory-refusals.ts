/**
 * The registry's words for memory: why a new listener is refused and why a
 * stalled stream is ended, each naming what the principal holds against its
 * fair share and what the client or operator can do.
 */
import type { MemoryBudget } from "./budget.ts";
import { formatBytes } from "./byte-counts.ts";
import { LimitExceededError } from "./errors.ts";

/** Why a listener whose fixed cost does not fit is refused (after makeRoom changed nothing), as the error to throw. */
export function memoryRefusal(budget: MemoryBudget, owner: string, bytes: number): LimitExceededError {
  const refusal = budget.refusal(owner, bytes);
  if (refusal === "owner") {
    return new LimitExceededError(
      `principal "${owner}" holds its share of the server's memory budget, ${
        formatBytes(budget.ownerLimit)
      } (--memory-budget-per-principal), and has no room for another listener; read or deregister its listeners that hold events`,
    );
  }
  if (refusal === "reserve") {
    return new LimitExceededError(
      `the server's memory budget of ${formatBytes(budget.limit)} (--memory-budget) is full but for its reserve of ${
        formatBytes(budget.reserve)
      }, ${pastFairShare(budget, owner, bytes)}; read or deregister its listeners that hold events`,
    );
  }
  return new LimitExceededError(
    `the server's memory budget of ${formatBytes(budget.limit)} (--memory-budget) has no room for another listener (${
      formatBytes(budget.used)
    } held by listeners' queued and retained events), ${
      pastFairShare(budget, owner, bytes)
    }; read or deregister listeners that hold events, ask for smaller buffers, or raise --memory-budget`,
  );
}

// Why a principal takes no room from others for a new listener. What it needs is said apart from what it holds:
// both rounded, "would hold 4.7 MiB, more than its fair share of 4.7 MiB" read as a contradiction.
function pastFairShare(budget: MemoryBudget, owner: string, bytes: number): string {
  return `and principal "${owner}" holds ${formatBytes(budget.usedBy(owner))}; a listener needs ${
    formatBytes(bytes)
  } more (its fixed cost and room for a first batch), past its fair share of ${
    formatBytes(budget.fairShareOf(owner))
  } (the budget less its reserve, over the principals holding any)`;
}

/** Why a stalled stream ends: what it held, for how long, and what its client can do. */
export function stalledWhy(budget: MemoryBudget, owner: string, leaseMs: number): string {
  const [held, share] = apart(budget.usedBy(owner), budget.fairShareOf(owner));
  return `its client did not take the batch it was sent (it read nothing, or less than the batch) for a lease, ${
    leaseMs / 1000
  } s (--lease-ms), while the server's memory budget of ${
    formatBytes(budget.limit)
  } (--memory-budget) was past its limit and principal ${
    JSON.stringify(owner)
  } held ${held}, more than its fair share of ${share}; the batch it held is given back`;
}

// Two byte counts as text that tells them apart (rounded alike, each with its exact count).
function apart(a: number, b: number): [string, string] {
  const [fa, fb] = [formatBytes(a), formatBytes(b)];
  return fa !== fb ? [fa, fb] : [`${fa} (${a} bytes)`, `${fb} (${b} bytes)`];
}
