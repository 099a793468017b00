/**
 * The auth file: principals (roles, optional uid limits) and the bearer
 * tokens that name them, stored as SHA-256 hashes so the file never holds a
 * usable credential. Tokens are random 256-bit secrets (`taskwire token`
 * makes them), so a fast hash is enough: there is nothing to guess by
 * brute force, unlike a password.
 *
 * ```json
 * {
 *   "principals": {
 *     "team-web": { "roles": ["read", "subscribe"], "uids": [1000, 1001] },
 *     "ops": { "roles": ["read", "subscribe", "admin", "metrics"] }
 *   },
 *   "tokens": { "<sha256 hex of the token>": "team-web" }
 * }
 * ```
 */
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { type Principal, type Role, ROLES } from "../core/principal.ts";

/** A parsed auth file: principals by name, and token hashes to principal names. */
export interface AuthTable {
  readonly principals: ReadonlyMap<string, Principal>;
  readonly tokens: ReadonlyMap<string, string>;
}

/** The auth file is malformed; the message names the key and the problem. */
export class AuthFileError extends Error {
  override readonly name = "AuthFileError";
}

/** The SHA-256 of a token, lowercase hex: what the auth file stores. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** A new random token (256 bits, base64url). */
export function newToken(): string {
  return `tw_${randomBytes(32).toString("base64url")}`;
}

// `taskwire token ... > auth.json 2>&1` (or &>, or >> to add a principal) puts the token's line, which the command
// writes on stderr, into the file: a usable token stored in the clear, and no JSON. Said as such, since jq would only
// point at the line.
const withStderr = (text: string) => /^\s*token \(give it to the client/m.test(text);
const STDERR_TOO =
  "it holds `taskwire token`'s stderr (the token itself, in the clear): write the file from stdout alone " +
  "(`taskwire token --principal NAME > auth.json`), give the token to its client and keep no copy of it";

// `taskwire token ... >> auth.json` appends a second document, which `jq .` reads without complaint: how many.
function documents(text: string): number {
  try {
    const docs: unknown = JSON.parse(`[${text.replace(/\}\s*\{/g, "},{")}]`);
    return Array.isArray(docs) ? docs.length : 1;
  } catch {
    return 1;
  }
}

// What to do about an auth file that is not JSON.
function notJsonHint(text: string, path: string): string {
  if (withStderr(text)) return STDERR_TOO;
  const n = documents(text);
  if (n < 2) return `check it with \`jq . ${path}\``;
  return `it holds ${n} JSON documents one after another (an entry appended with >>?): merge them into one, ` +
    `\`jq -s 'reduce .[] as $e ({}; . * $e)' ${path} > merged.json\`, and use that`;
}

/** Reads and checks the auth file at `path`. */
export function readAuthFile(path: string): AuthTable {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new AuthFileError(`cannot read the auth file ${path}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    // JSON.parse's message quotes the text around the fault, and this file holds token hashes: say where only.
    const at = /(?:at )?position \d+(?: \(line \d+ column \d+\))?|line \d+ column \d+/.exec((err as Error).message)
      ?.[0];
    throw new AuthFileError(
      `the auth file ${path} is not JSON (a syntax error${at === undefined ? "" : ` at ${at.replace(/^at /, "")}`}); ${
        notJsonHint(text, path)
      }`,
    );
  }
  return parseAuthTable(json, path);
}

/** Checks a parsed auth file; `where` names it in errors. */
export function parseAuthTable(json: unknown, where = "auth file"): AuthTable {
  const top = objectAt(json, where);
  for (const key of Object.keys(top)) {
    if (key !== "principals" && key !== "tokens") fail(where, key, 'is not a known key; use "principals" and "tokens"');
  }
  const principals = new Map<string, Principal>();
  for (const [name, spec] of Object.entries(objectAt(top["principals"] ?? {}, `${where}: principals`))) {
    principals.set(name, principalAt(name, spec, where));
  }
  const tokens = new Map<string, string>();
  for (const [i, [hash, name]] of Object.entries(objectAt(top["tokens"] ?? {}, `${where}: tokens`)).entries()) {
    // Named by its place, never by its key: a key that is no hash may be a token itself, which no log may show.
    if (!/^[0-9a-f]{64}$/.test(hash)) {
      fail(
        where,
        `the key of tokens entry ${i + 1}`,
        "is not a SHA-256 hash, 64 lowercase hex digits: keys are tokens' hashes, never tokens (`taskwire token` prints an entry)",
      );
    }
    if (typeof name !== "string" || !principals.has(name)) {
      fail(where, `tokens.${hash.slice(0, 12)}…`, `names ${JSON.stringify(name)}, which is not under "principals"`);
    }
    tokens.set(hash, name as string);
  }
  return { principals, tokens };
}

/** Why `name` cannot name a principal (undefined: it can): what the auth file and `taskwire token` both refuse. */
export function principalNameProblem(name: string): string | undefined {
  // Control characters too: a name is written into log lines (audit, access) and would forge or garble them; and
  // lone surrogates, which no log line can carry. Characters are counted as code points, not UTF-16 units.
  if (name === "" || name.length > 128 && [...name].length > 128 || /[\s"\p{Cc}\p{Cs}]/u.test(name)) {
    return "a principal's name needs 1-128 characters without spaces, quotes, control characters or lone surrogates";
  }
  // The server's own listeners are owned by such names (the fleet publisher's by taskwire:fleet-publisher): a
  // principal of that name would see, stream, take over and deregister them, as only an admin may.
  if (name.toLowerCase().startsWith(RESERVED_PREFIX)) {
    return `a principal's name may not start with "${RESERVED_PREFIX}": such names are the server's own`;
  }
  return undefined;
}

/** Names that start with this (any case) are the server's own owners, never a principal's (principalNameProblem). */
export const RESERVED_PREFIX = "taskwire:";

function principalAt(name: string, spec: unknown, where: string): Principal {
  const problem = principalNameProblem(name);
  if (problem !== undefined) fail(where, `principals[${JSON.stringify(name)}]`, problem);
  const o = objectAt(spec, `${where}: principals.${name}`);
  for (const key of Object.keys(o)) {
    if (key !== "roles" && key !== "uids") {
      fail(where, `principals.${name}.${key}`, 'is not a known key; use "roles" and "uids"');
    }
  }
  const roles = o["roles"];
  if (!Array.isArray(roles) || roles.some((r) => !ROLES.includes(r as Role))) {
    fail(where, `principals.${name}.roles`, `must be a list of ${ROLES.map((r) => `"${r}"`).join(", ")}`);
  }
  const uids = o["uids"];
  if (
    uids !== undefined && (!Array.isArray(uids) || uids.some((u) => !Number.isInteger(u) || u < 0 || u > 0xffffffff))
  ) {
    fail(where, `principals.${name}.uids`, "must be a list of uids (whole numbers 0-4294967295)");
  }
  return {
    id: name,
    roles: new Set(roles as Role[]),
    via: "token",
    ...(uids !== undefined && { uids: new Set(uids as number[]) }),
  };
}

function objectAt(v: unknown, where: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new AuthFileError(`${where} must be a JSON object`);
  }
  return v as Record<string, unknown>;
}

function fail(where: string, key: string, problem: string): never {
  throw new AuthFileError(`${where}: ${key} ${problem}`);
}
