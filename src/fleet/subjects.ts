/**
 * How taskwire's records map onto NATS subjects: `<prefix>.<host>.exits.<cpu>`
 * for an exit (and a kernel overflow's loss marker, which belongs to one
 * CPU), `<prefix>.<host>.exits.lost` for a loss marker of the publisher's own
 * queue, whose lost seqs span every CPU. A stream holds `<prefix>.*.exits.*`.
 *
 * A subject token may not hold `.` (the separator), whitespace, or the
 * wildcards `*` and `>`; hostnames hold dots (FQDNs). So the host token is
 * the hostname with every character outside [A-Za-z0-9_-] replaced by `_`
 * ("web-1.example.com" -> "web-1_example_com"), cut to MAX_HOST_TOKEN
 * characters; two names that map to the same token would share subjects, so
 * such hosts set `--nats-host-name`.
 */

/** The longest host token (NATS has no token limit; this keeps subjects and message ids short). */
export const MAX_HOST_TOKEN = 128;

/** The subject token of loss markers that are not one CPU's (the publisher's queue overflowed). */
export const LOST_TOKEN = "lost";

const UNSAFE = /[^A-Za-z0-9_-]/g;
const TOKEN = /^[A-Za-z0-9_-]+$/;

/** The host token of `hostname` (see the module comment); RangeError for an empty name. */
export function hostToken(hostname: string): string {
  const token = hostname.replace(UNSAFE, "_").slice(0, MAX_HOST_TOKEN);
  if (token === "") throw new RangeError("the host name for NATS subjects is empty; pass --nats-host-name");
  return token;
}

/** Checks a host token given as is (--nats-host-name); RangeError saying what is allowed. */
export function checkHostToken(token: string): string {
  if (!TOKEN.test(token) || token.length > MAX_HOST_TOKEN) {
    throw new RangeError(
      `--nats-host-name "${
        token.slice(0, 40)
      }" is not a NATS subject token: use 1 to ${MAX_HOST_TOKEN} of A-Z a-z 0-9 _ -`,
    );
  }
  return token;
}

/** Checks a subject prefix: one or more tokens of [A-Za-z0-9_-] separated by dots. */
export function checkPrefix(prefix: string): string {
  if (prefix.split(".").some((t) => !TOKEN.test(t))) {
    throw new RangeError(
      `--nats-subject-prefix "${prefix.slice(0, 40)}" must be dot-separated tokens of A-Z a-z 0-9 _ - (no wildcards)`,
    );
  }
  return prefix;
}

/** Every subject the stream holds: `<prefix>.*.exits.*`. */
export function streamSubjects(prefix: string): string {
  return `${prefix}.*.exits.*`;
}

/** The subject of an event on `cpu` (-1: a loss marker of no one CPU). */
export function eventSubject(prefix: string, host: string, cpu: number): string {
  return `${prefix}.${host}.exits.${cpu < 0 ? LOST_TOKEN : cpu}`;
}
