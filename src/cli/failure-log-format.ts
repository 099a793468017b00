/**
 * The log format a failed `serve` start ends with, read before its settings
 * are all in (the rest is what failed): its own precedence over the command
 * line, the environment and the config file, without parsing anything else.
 */
import { readFileSync, statSync } from "node:fs";
import type { Command } from "commander";
import { parse } from "smol-toml";
import type { LogFormat } from "../log/logger.ts";
import { configKey, envName, isBoolean } from "./config.ts";

/**
 * The log format `cmd` (serve) would have run with, for the line a start
 * that failed before its settings were all in ends with: a usage error of
 * commander's on its command line `args` (what follows its name), a bad
 * variable or config key. The rule is a start's own precedence, flag > env
 * > file, read without parsing anything else (the rest is what failed), so
 * the record is JSON whenever the server would have logged JSON: with
 * `--log-format json` before the bad flag or after it (the last one given, as
 * commander takes it), in TASKWIRE_LOG_FORMAT, or in the config file
 * (--config or TASKWIRE_CONFIG). The file is read again only if it is a
 * regular file (a pipe, --config <(...), may have been read already, and a
 * FIFO would be waited on); one that cannot be read says text, as does
 * --print-config, whose reader is a person at a terminal; one TOML cannot
 * parse is read for a top-level `log-format = "json"` line of its own.
 */
export function failureLogFormat(
  cmd: Command,
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>> = process.env,
): LogFormat {
  const line = commandLine(cmd, args);
  const option = cmd.options.find((o) => o.attributeName() === "logFormat");
  if (line.get("printConfig") === true || option === undefined) return "text";
  const file = line.get("config") ?? env["TASKWIRE_CONFIG"];
  const format = line.get("logFormat") ?? (env[envName(option)] || fileSetting(file, configKey(option)));
  return format === "json" ? "json" : "text";
}

// The options `args` give `cmd` as commander reads them: a flag that takes a value takes the next argument, whatever
// it is, or its =value; an optional value only an argument that is no option; `--` ends them; of a flag given twice,
// the last. Anything else (operands, unknown options) is passed over.
function commandLine(cmd: Command, args: readonly string[]): Map<string, string | true> {
  const given = new Map<string, string | true>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") break;
    const eq = /^--[^=]+=/.test(arg) ? arg.indexOf("=") : -1;
    const flag = eq < 0 ? arg : arg.slice(0, eq);
    const option = cmd.options.find((o) => o.long === flag || (eq < 0 && o.short === flag));
    if (option === undefined) continue;
    const name = option.attributeName(), next = args[i + 1];
    if (eq >= 0) {
      if (!isBoolean(option)) given.set(name, arg.slice(eq + 1));
    } else if (option.required) {
      if (next !== undefined) given.set(name, args[++i]!);
    } else if (option.optional && next !== undefined && !next.startsWith("-")) {
      given.set(name, args[++i]!);
    } else given.set(name, true);
  }
  return given;
}

// A config file's `key`, read on its own: undefined for a file that is not a regular one or cannot be read. A file
// TOML cannot parse (a syntax error may be what failed) is read for the key's own line: a top-level `key = "value"`.
function fileSetting(file: unknown, key: string): unknown {
  if (typeof file !== "string" || file === "") return undefined;
  let text: string;
  try {
    if (!statSync(file).isFile()) return undefined;
    text = readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
  try {
    return parse(text, { integersAsBigInt: true })[key];
  } catch {
    return lineSetting(text, key);
  }
}

// `key`'s string value on a line of its own before the first table header, as TOML writes it (either quotes, a
// comment after); undefined if there is none. `key` is a config key: letters, digits and dashes.
function lineSetting(text: string, key: string): string | undefined {
  const line = new RegExp(`^\\s*${key}\\s*=\\s*(?:"([^"\\\\]*)"|'([^']*)')\\s*(?:#.*)?$`);
  for (const l of text.split(/\r?\n/)) {
    if (/^\s*\[/.test(l)) break;
    const m = line.exec(l);
    if (m !== null) return m[1] ?? m[2];
  }
  return undefined;
}
