/**
 * Why JetStream publishes fail, in words an operator can act on, and a log of
 * it at a bounded rate. The pump retries every failed publish for ever (a
 * permission may be granted later, a stream recreated), so a cause that does
 * not go away would otherwise show as one generic line, or as one per
 * message: here the first failure is logged at once with NATS's own words and
 * what to do, the cause again every `intervalMs` while it lasts (with what it
 * cost so far), and its end once a publish is acked again.
 */
import { redactText } from "./_connect.ts";

/** The kinds of failure /metrics counts (the `reason` label). */
export const FAILURE_REASONS = ["permission", "sealed", "no-stream", "timeout", "refused"] as const;
export type FailureReason = typeof FAILURE_REASONS[number];

/** One failure: its kind, and a message saying what happened and what to do. */
export interface PublishFailure {
  readonly reason: FailureReason;
  readonly text: string;
}

/** Where the publisher publishes, for the messages. */
export interface PublishTarget {
  readonly stream: string;
  readonly prefix: string;
  readonly host: string;
  readonly ackTimeoutMs: number;
}

// NATS's words are kept whole but bounded: a server's error line is short, this only caps what memory and logs take.
const MAX_NATS_TEXT = 300;

/** `err` of a publish to `subject`, described. */
export function describeFailure(err: unknown, subject: string, t: PublishTarget): PublishFailure {
  const e = err as { name?: unknown; message?: unknown; code?: unknown; cause?: { message?: unknown } } | undefined;
  const said = natsText(err);
  const cause = typeof e?.cause?.message === "string" ? e.cause.message : "";
  const perm = /Permissions Violation for (Publish|Subscription) to "([^"]*)"/i.exec(`${said} ${cause}`);
  if (perm !== null) {
    const what = perm[1]!.toLowerCase() === "publish"
      ? `let its NATS user publish to ${t.prefix}.${t.host}.exits.>`
      : `let its NATS user subscribe to _INBOX.> (JetStream's acks come back there)`;
    return {
      reason: "permission",
      text: `NATS denies the publisher (${clip(perm[0])}): ${what}; publishing resumes once it may`,
    };
  }
  if (e?.code === 10109 || /sealed stream/i.test(said)) {
    return {
      reason: "sealed",
      text: `stream ${t.stream} is sealed and takes no more messages (NATS: ${said}): ` +
        `delete it (taskwire makes it again when restarted) or publish to another --nats-stream`,
    };
  }
  if (/no responders/i.test(`${said} ${cause}`) || e?.name === "JetStreamNotEnabled") {
    return {
      reason: "no-stream",
      text: `no JetStream stream takes ${subject} (NATS: no responders): stream ${t.stream} was deleted, ` +
        `no longer holds ${t.prefix}.*.exits.*, or JetStream is off; make it again ` +
        `(restarting taskwire does) or give it those subjects back`,
    };
  }
  if (e?.name === "TimeoutError" || /timeout/i.test(said)) {
    return {
      reason: "timeout",
      text: `no ack from JetStream within ${t.ackTimeoutMs} ms (--nats-ack-timeout-ms; NATS: ${said}): ` +
        `NATS is unreachable or slow, or stream ${t.stream} is unavailable; check the NATS server and the stream`,
    };
  }
  if (isSizeRefusal(err)) {
    return {
      reason: "refused",
      text: `a message was larger than NATS takes now (NATS: ${said}): the server's max_payload or stream ` +
        `${t.stream}'s max_msg_size was lowered; the publisher reads them again and cuts its messages to them`,
    };
  }
  return {
    reason: "refused",
    text: `JetStream refused the publish to stream ${t.stream} (NATS: ${said}${
      typeof e?.code === "number" ? `, error ${e.code}` : ""
    }): check the stream's limits and configuration on the NATS server`,
  };
}

/**
 * Whether `err` refuses a message for its size: over the stream's
 * max_msg_size (JetStream's error 10054), or over the max_payload of the
 * server connected to now (nats.js refuses it before sending).
 */
export function isSizeRefusal(err: unknown): boolean {
  const e = err as { code?: unknown } | undefined;
  return e?.code === 10054 || /max_payload size exceeded|message size exceeds maximum/i.test(natsText(err));
}

/** What an error says, bounded, without any user:password@ in a URL. */
export function natsText(err: unknown): string {
  const e = err as { message?: unknown } | undefined;
  return clip(redactText(typeof e?.message === "string" ? e.message : String(err)));
}

function clip(s: string): string {
  return s.length <= MAX_NATS_TEXT ? s : `${s.slice(0, MAX_NATS_TEXT)}…`;
}

/** What a failure cost so far, for its messages. */
export interface FailureCost {
  readonly retries: number;
  readonly dropped: number;
}

/** Failures of publishing, logged at a bounded rate, and their counts per reason. */
export class FailureLog {
  readonly #log: (level: "info" | "warning", text: string) => void;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #counts: Record<FailureReason, number> = {
    permission: 0,
    sealed: 0,
    "no-stream": 0,
    timeout: 0,
    refused: 0,
  };
  #current: { failure: PublishFailure; since: number; cost: FailureCost } | undefined;
  #loggedAt = -Infinity;
  /** An error the NATS server sent (a status "error") since the last ack, and when it was logged. */
  #server: string | undefined;
  #serverLoggedAt = -Infinity;

  constructor(log: (level: "info" | "warning", text: string) => void, intervalMs: number, now = Date.now) {
    this.#log = log;
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  /** The failure in progress (its text names its cause and what to do), or undefined while publishes are acked. */
  get current(): { readonly failure: PublishFailure; readonly since: number } | undefined {
    return this.#current;
  }

  /** Failures so far, per reason. */
  get counts(): Readonly<Record<FailureReason, number>> {
    return this.#counts;
  }

  /** A publish failed: logged now if it is the first since an ack, else at most once per interval. */
  failed(f: PublishFailure, cost: FailureCost): void {
    this.#counts[f.reason]++;
    const now = this.#now();
    // A timeout says less than a cause NATS named in the same outage (a denied publish's -ERR matches only one of
    // the requests in flight; the others time out): it does not hide it. The server's own last error is added.
    const failure = this.#withServer(f);
    if (this.#current === undefined) {
      this.#current = { failure, since: now, cost };
      this.#loggedAt = now;
      this.#log(
        "warning",
        `fleet: publishing to NATS fails: ${failure.text}. ` +
          `Retrying; meanwhile exits queue (--nats-buffer), then are dropped and published as loss markers`,
      );
      return;
    }
    if (f.reason !== "timeout" || this.#current.failure.reason === "timeout") this.#current.failure = failure;
    if (now - this.#loggedAt < this.#intervalMs) return;
    this.#loggedAt = now;
    const c = this.#cost(cost);
    this.#log(
      "warning",
      `fleet: publishing to NATS still fails after ${secs(now - this.#current.since)} ` +
        `(${c.retries} retries, ${c.dropped} exits dropped so far): ${this.#current.failure.text}`,
    );
  }

  /** A publish was acked: the failure in progress, if any, is over (logged once). */
  acked(cost: FailureCost): void {
    this.#server = undefined;
    const cur = this.#current;
    if (cur === undefined) return;
    const c = this.#cost(cost);
    this.#current = undefined;
    this.#loggedAt = -Infinity;
    this.#log(
      "info",
      `fleet: publishing to NATS again after ${secs(this.#now() - cur.since)} of failures ` +
        `(last: ${cur.failure.reason}); ${c.retries} retries, ${c.dropped} exits dropped during it, ` +
        `published as loss markers`,
    );
  }

  /**
   * An error the NATS server sent on the connection (nats.js reports it as a status, not always on a request):
   * logged at most once per interval, and named with the next failures until a publish is acked.
   */
  serverError(err: unknown): void {
    const text = natsText(err);
    this.#server = text;
    const now = this.#now();
    if (now - this.#serverLoggedAt < this.#intervalMs) return;
    this.#serverLoggedAt = now;
    this.#log("warning", `fleet: the NATS server reports an error: ${text}`);
  }

  #withServer(f: PublishFailure): PublishFailure {
    const s = this.#server;
    return s === undefined || f.text.includes(s) ? f : { ...f, text: `${f.text} (the server last said: ${s})` };
  }

  // What this failure cost: the counters now less those at its start.
  #cost(now: FailureCost): FailureCost {
    const at = this.#current?.cost ?? now;
    return { retries: now.retries - at.retries, dropped: now.dropped - at.dropped };
  }
}

function secs(ms: number): string {
  return `${Math.round(ms / 1000)} s`;
}
