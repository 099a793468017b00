/**
 * `~` at the start of a file setting's path. Only a shell expands it, and only
 * in an unquoted word it begins: a config file, an environment variable (a
 * unit's Environment= or EnvironmentFile=), a quoted argument, `--flag=~/x`
 * and a systemd unit's command line all pass it on as it is. taskwire does
 * not expand it either (where it is not expanded would then depend on which
 * of these wrote it), so such a path would name a file in a directory called
 * `~`: it is refused wherever it comes from, naming the path to write.
 */
import { readFileSync } from "node:fs";
import { userInfo } from "node:os";
import type { Command } from "commander";
import { UsageError } from "./errors.ts";

/** Whether `option` takes a local file's path (its flag says `<file>`). */
export function isFileOption(option: { readonly flags: string }): boolean {
  return option.flags.includes("<file>");
}

/**
 * Why `path` is refused when it starts with `~` (`~`, `~/x`, `~user/x`), left
 * unexpanded in `where` ("a config file", "an environment variable"); undefined
 * for any other path.
 */
export function tildeProblem(path: string, where: string): string | undefined {
  if (!path.startsWith("~")) return undefined;
  return `~ is not expanded in ${where}: write the path in full, e.g. ${expanded(path)}`;
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

// The path a shell would have made of `path`: ~ as $HOME (the account's home from the password file when it is unset
// or empty, as a unit's may be), ~user as that user's home.
function expanded(path: string): string {
  const [, user = "", rest = ""] = /^~([^/]*)(.*)$/s.exec(path) ?? [];
  const home = user === "" ? process.env["HOME"] || safe(() => userInfo().homedir, "") || "/root" : homeOf(user);
  return `${home}${rest}`;
}

// A user's home directory from the password file, as a shell looks it up; /home/<user> for one not found there.
function homeOf(user: string): string {
  const self = safe(() => userInfo(), undefined);
  if (self?.username === user && self.homedir !== "") return self.homedir;
  const entry = safe(() => readFileSync("/etc/passwd", "utf8"), "").split("\n")
    .map((line) => line.split(":"))
    .find((fields) => fields[0] === user && fields.length >= 7);
  return entry?.[5] || `/home/${user}`;
}

// `read()`, or `otherwise` when it throws (no password entry for this uid, a runtime without the permission).
function safe<T>(read: () => T, otherwise: T): T {
  try {
    return read();
  } catch {
    return otherwise;
  }
}
