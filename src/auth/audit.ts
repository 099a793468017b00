/**
 * The audit trail of refused calls: one line per authentication failure or
 * missing role (who, from where, which method, why). A flood of bad requests
 * must not become a flood of log lines, so lines are limited per second and
 * the rest counted and summarized. Lines are warning records of category
 * ["taskwire", "audit"] (fields: address, principal, method, reason).
 */
import type { Logger } from "@logtape/logtape";
import { clip } from "../core/errors.ts";
import { createLineBudget } from "../log/line-budget.ts";
import { logText, taskwireLogger } from "../log/logger.ts";

/** A refused call. */
export interface AuditEvent {
  readonly kind: "unauthenticated" | "permission-denied";
  readonly address: string;
  readonly principal?: string | undefined;
  readonly method: string;
  readonly reason: string;
}

/** Where audit lines go. */
export interface AuditLog {
  record(event: AuditEvent): void;
  /** Refusals so far by kind (for metrics and tests). */
  readonly counts: Readonly<Record<AuditEvent["kind"], number>>;
}

/** Options of createAuditLog. */
export interface AuditOptions {
  /** taskwire's logger; lines go to its "audit" child at warning level (default: taskwireLogger()). */
  readonly logger?: Logger;
  /** Writes each line as text instead of logging it (tests). */
  readonly write?: (line: string) => void;
  /** Most lines per second; the rest are counted into one summary line (default 20). */
  readonly maxPerSecond?: number;
  readonly now?: () => number;
}

/** Creates an audit log. */
export function createAuditLog(o: AuditOptions = {}): AuditLog {
  const out = auditOutput(o);
  const counts = { unauthenticated: 0, "permission-denied": 0 };
  // The summary is written once its second is over, not held back until the next refusal (a flood that stops
  // would otherwise be summed up only by the next refused call, hours later perhaps).
  const budget = createLineBudget(o.maxPerSecond ?? 20, out.summary, o.now);
  return {
    counts,
    record(e) {
      counts[e.kind]++;
      if (budget.take()) out.event(e);
    },
  };
}

interface AuditOutput {
  event(e: AuditEvent): void;
  summary(suppressed: number): void;
}

function auditOutput(o: AuditOptions): AuditOutput {
  const summary = (n: number) => `${n} more refused calls not logged in the last second`;
  const fields = (e: AuditEvent) => ({
    address: clip(e.address || "-"),
    ...(e.principal !== undefined && { principal: clip(e.principal) }),
    method: clip(e.method),
    reason: clip(e.reason),
  });
  const write = o.write;
  if (write !== undefined) {
    return {
      event: (e) =>
        write(
          `taskwire: audit: ${e.kind} ${
            Object.entries(fields(e)).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ")
          }`,
        ),
      summary: (n) => write(`taskwire: audit: ${summary(n)}`),
    };
  }
  const logger = (o.logger ?? taskwireLogger()).getChild("audit");
  return {
    event: (e) => logText(logger, "warning", e.kind, fields(e)),
    summary: (n) => logText(logger, "warning", summary(n)),
  };
}
