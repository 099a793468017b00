/**
 * The audit trail of refused calls: one line per authentication failure or
 * missing role (who, from where, which method, why). A flood of bad requests
 * must not become a flood of log lines, so lines are limited per second and
 * the rest counted and summarized.
 */

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
  /** Writes one line (default: stderr). */
  readonly write?: (line: string) => void;
  /** Most lines per second; the rest are counted into one summary line (default 20). */
  readonly maxPerSecond?: number;
  readonly now?: () => number;
}

/** Creates an audit log. */
export function createAuditLog(o: AuditOptions = {}): AuditLog {
  const write = o.write ?? ((line: string) => console.error(line));
  const max = o.maxPerSecond ?? 20;
  const now = o.now ?? Date.now;
  const counts = { unauthenticated: 0, "permission-denied": 0 };
  let second = 0, written = 0, suppressed = 0;
  return {
    counts,
    record(e) {
      counts[e.kind]++;
      const s = Math.floor(now() / 1000);
      if (s !== second) {
        if (suppressed > 0) write(`taskwire: audit: ${suppressed} more refused calls not logged in the last second`);
        second = s;
        written = 0;
        suppressed = 0;
      }
      if (written >= max) {
        suppressed++;
        return;
      }
      written++;
      const who = e.principal === undefined ? "" : ` principal=${JSON.stringify(e.principal)}`;
      write(
        `taskwire: audit: ${e.kind} address=${e.address || "-"}${who} method=${e.method} reason=${
          JSON.stringify(e.reason)
        }`,
      );
    },
  };
}
