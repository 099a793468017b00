/**
 * What the SDK says of a deadline its client set passing: connect-es's
 * "[deadline_exceeded] the operation timed out" names neither the setting
 * nor its value, so such an error is made one that says which it was (a
 * call's or a stream's `timeoutMs`, or a given transport's
 * `defaultTimeoutMs`) and what to do.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { TaskwireError } from "./errors.ts";

/**
 * Which deadline a call had: its own `timeoutMs`, or, without one, its
 * transport's `defaultTimeoutMs` (connect-es's option). The SDK's own
 * transport ("own") sets no default; a transport given in `transport`
 * ("given") may, and the SDK cannot read it back.
 */
export interface Deadline {
  readonly timeoutMs: number | undefined;
  readonly transport: "own" | "given";
}

// What connect-es says of a deadline its timer ended: on the client, or on a plain connect-es server timing the same
// deadline (sent as connect-timeout-ms or grpc-timeout). A taskwire server says its own, with its ErrorDetail.
const DEADLINE_PASSED = "the operation timed out";

/**
 * `err`, when it is a deadline the client set passing, as an error that says
 * so and what to do: connect-es's "[deadline_exceeded] the operation timed
 * out" names neither the setting nor its value. The call's own `timeoutMs`;
 * without one, a given transport's `defaultTimeoutMs`, which connect-es
 * applies to every call that passes none. It stays a plain ConnectError (it
 * is no server's refusal, so no TaskwireError) with Code.DeadlineExceeded
 * (watchExits retries that code; code that checks codes keeps working),
 * connect-es's error as its cause. Any other error, a DEADLINE_EXCEEDED of a
 * proxy's own timeout included (its text is not connect-es's), is returned as
 * it is.
 */
export function explainDeadline(err: unknown, deadline: Deadline, what: "call" | "stream"): unknown {
  if (
    !(err instanceof ConnectError) || err instanceof TaskwireError || err.code !== Code.DeadlineExceeded ||
    err.rawMessage !== DEADLINE_PASSED
  ) {
    return err;
  }
  const why = deadlineWords(deadline, what);
  if (why === undefined) return err;
  return new ConnectError(
    why,
    Code.DeadlineExceeded,
    err.metadata,
    err.details as ConstructorParameters<typeof ConnectError>[3],
    err,
  );
}

// What passed and what to do, for a deadline the client set; undefined where it set none.
function deadlineWords({ timeoutMs, transport }: Deadline, what: "call" | "stream"): string | undefined {
  // connect-es arms no deadline for a timeoutMs of 0 or less, not even its transport's default.
  if (timeoutMs !== undefined) {
    if (timeoutMs <= 0) return undefined;
    return what === "stream"
      ? `the stream's deadline (timeoutMs ${timeoutMs}) passed: a stream's timeoutMs bounds all of it; pass a longer timeoutMs, or none`
      : `the call's deadline (timeoutMs ${timeoutMs}) passed: pass a longer timeoutMs, or none`;
  }
  // The SDK's own transport has no default: a deadline it did not set is no client's to name.
  if (transport !== "given") return undefined;
  const bounds = what === "stream" ? " a stream's deadline bounds all of it;" : "";
  return `the ${what}'s deadline (the transport's defaultTimeoutMs: the ${what} passed no timeoutMs) passed:${bounds} ` +
    `pass a timeoutMs of the ${what}'s own (0 for none), or create the transport with a longer defaultTimeoutMs`;
}
