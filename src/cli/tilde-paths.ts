/**
 * `~` at the start of a file setting's path. Only a shell expands it, and only
 * in an unquoted word it begins: a config file, an environment variable (a
 * unit's Environment= or EnvironmentFile=), a quoted argument, `--flag=~/x`
 * and a systemd unit's command line all pass it on as it is. taskwire does
 * not expand it either (where it is not expanded would then depend on which
 * of these wrote it), so such a path would name a file in a directory called
 * `~`: it is refused wherever it comes from, naming the path to write.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { userInfo } from "node:os";
import type { Command } from "commander";
import { UsageError } from "./errors.ts";

/** Whether `option` takes a local file's path (its flag says `<file>`). */
export function isFileOption(option: { readonly flags: string }): boolean {
  return option.flags.includes("<file>");
}

/**
 * Why `path` is refused when it starts with `~` (`~`, `~/x`, `~user/x`), left
 * unexpanded in `where` ("a config file", "an environment variable"), with the
 * path a shell would have made of it; for a `~user` whose user the password
 * file does not have, that it names no user (no home is made up for it).
 * Undefined for any other path.
 */
export function tildeProblem(path: string, where: string): string | undefined {
  if (!path.startsWith("~")) return undefined;
  const [, user = "", rest = ""] = /^~([^/]*)(.*)$/s.exec(path) ?? [];
  const home = user === "" ? ownHome() : homeOf(user);
  if (home === undefined) {
    // No home to suggest: /home/<user> would name a directory of no one's, likely a typo's.
    return `~ is not expanded in ${where}, and ~${shown(user)} names no user in /etc/passwd: write the path in full ` +
      "(an absolute path, e.g. in an existing user's home directory)";
  }
  return `~ is not expanded in ${where}: write the path in full, e.g. ${home}${rest}`;
}

/**
 * Refuses a file option of `cmd` whose value starts with `~` and came from
 * the command line or from a variable commander read (the client commands'
 * TASKWIRE_CA, serve's TASKWIRE_CONFIG): a preAction hook. A config file's
 * paths, and the serve variables config.ts applies, are checked as they are
 * read (before a config file's relative paths are made absolute).
 */
export function refuseTildePaths(cmd: Command): void {
  for (const option of cmd.options) {
    const value: unknown = cmd.getOptionValue(option.attributeName());
    if (!isFileOption(option) || typeof value !== "string") continue;
    const source = cmd.getOptionValueSource(option.attributeName());
    if (source === "env") {
      const problem = tildeProblem(value, "an environment variable");
      if (problem !== undefined) throw new UsageError(`environment variable ${option.envVar}: ${problem}`);
    } else if (source === "cli") {
      // Here the shell did not expand it: quoted, after --flag=, or a command line no shell read.
      const problem = tildeProblem(
        value,
        `this argument (a shell expands it only unquoted at a word's start: not in quotes, after ${option.long}=, ` +
          "nor in a systemd unit)",
      );
      if (problem !== undefined) throw new UsageError(`${option.long} ${JSON.stringify(value)}: ${problem}`);
    }
  }
}

// $HOME, as a shell expands ~; the account's home from the password file when it is unset or empty, as a unit's may be.
function ownHome(): string {
  return process.env["HOME"] || safe(() => userInfo().homedir, "") || "/root";
}

// A password file this long is not read further: the lookup is made only to word a refusal.
const PASSWD_MAX_BYTES = 4 * 1024 * 1024;
// Longer than any login name Linux takes (LOGIN_NAME_MAX, with its NUL): no user to look up.
const USER_MAX_CHARS = 255;

// A user's home directory from the password file (its first PASSWD_MAX_BYTES), as a shell looks it up; undefined for
// a user not found there (users only a directory service knows included: their paths are written in full all the same).
function homeOf(user: string): string | undefined {
  if (user.length > USER_MAX_CHARS) return undefined;
  const self = safe(() => userInfo(), undefined);
  if (self?.username === user && self.homedir !== "") return self.homedir;
  const entry = safe(() => readHead("/etc/passwd", PASSWD_MAX_BYTES), "").split("\n")
    .map((line) => line.split(":"))
    .find((fields) => fields[0] === user && fields.length >= 7);
  return entry?.[5] || undefined;
}

// The first `max` bytes of `file`, as text.
function readHead(file: string, max: number): string {
  const fd = openSync(file, "r");
  try {
    const buf = new Uint8Array(max);
    let got = 0, n = 1;
    while (n > 0 && got < max) {
      n = readSync(fd, buf, got, max - got, null);
      got += n;
    }
    return new TextDecoder().decode(buf.subarray(0, got));
  } finally {
    closeSync(fd);
  }
}

// A user name as a message shows it: its control characters escaped, a long one cut.
function shown(user: string): string {
  const cut = user.length > 64 ? `${user.slice(0, 64)}...` : user;
  return JSON.stringify(cut).slice(1, -1);
}

// `read()`, or `otherwise` when it throws (no password entry for this uid, a runtime without the permission).
function safe<T>(read: () => T, otherwise: T): T {
  try {
    return read();
  } catch {
    return otherwise;
  }
}
