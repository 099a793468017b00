/**
 * `taskwire serve`'s configuration from a file and the environment, beside
 * its flags. Every serve flag is a config key (its long name without the
 * dashes: `port`, `token-file`, `access-log`) and an environment variable
 * (TASKWIRE_ and the name in upper snake case: TASKWIRE_PORT,
 * TASKWIRE_TOKEN_FILE), generated from commander's option list, so a new
 * flag is both without more code. Values go through the flag's own parser,
 * so a bad value gets the flag's message.
 *
 * The file is TOML: it has comments, which an operator's config needs
 * (why a limit is what it is), and it is what daemons' configs look like.
 *
 * Precedence is commander's own value sources: flag > env > file > default.
 * Commander applies the flags while parsing; a preAction hook then sets the
 * file's keys where a value is still the default (source "config"), then the
 * env variables where it did not come from a flag (source "env"). Env is
 * read here rather than by commander's Option.env(), which reads only
 * variables named before the option is added (these are generated after)
 * and turns a boolean flag on for any value, "false" included.
 */
import { readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { type Command, InvalidArgumentError, Option } from "commander";
import { parse, stringify, TomlError } from "smol-toml";
import { UsageError } from "./errors.ts";
import { nearest } from "./nearest-name.ts";
import { isFileOption, tildeProblem } from "./tilde-paths.ts";

/** Options that configure the configuration, not the server: never keys, never env variables of their own. */
const NOT_KEYS = new Set(["config", "printConfig", "help", "version"]);

/** Environment variables the client commands read (--url, --token, --ca, --cert, --key); no serve key may map to one. */
export const CLIENT_ENV = new Set(["TASKWIRE_URL", "TASKWIRE_TOKEN", "TASKWIRE_CA", "TASKWIRE_CERT", "TASKWIRE_KEY"]);

/** The config key of an option: its long name in kebab case, without a `no-` (`access-log = false`). */
export function configKey(option: Option): string {
  return option.attributeName().replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** The environment variable of an option: TASKWIRE_ and its key in upper snake case. */
export function envName(option: Option): string {
  return `TASKWIRE_${configKey(option).toUpperCase().replaceAll("-", "_")}`;
}

/** Whether `o` is a flag without a value (true, or false by its --no- form). */
export const isBoolean = (o: Option): boolean => !o.required && !o.optional;

/**
 * How an error names `cmd`'s setting `attribute`: its flag, and where its
 * value came from when that was not the command line (an environment
 * variable, a config file's key), so that a bad value can be found where it
 * was written.
 */
export function settingName(cmd: Command, attribute: string): string {
  const option = cmd.options.find((o) => o.attributeName() === attribute);
  if (option?.long === undefined) throw new RangeError(`${cmd.name()} has no option ${attribute}`);
  return `${option.long}${originOf(cmd, option)}`;
}

// " (from TASKWIRE_X)" or " (from config FILE, key `k`)" for a setting not given on the command line; "" for one that
// was, or is its default.
function originOf(cmd: Command, option: Option): string {
  const source = cmd.getOptionValueSource(option.attributeName());
  if (source === "env") return ` (from ${option.envVar ?? envName(option)})`;
  if (source === "config") {
    return ` (from config ${cmd.getOptionValue("config") as string}, key \`${configKey(option)}\`)`;
  }
  return "";
}

/**
 * Names, in `err`'s message, where each setting it mentions by flag was set,
 * when that was not the command line: the first `--port 7000` of the
 * message becomes `--port 7000 (from TASKWIRE_PORT)`. Every check names settings by their
 * flags; this is the one place that knows where each value came from
 * (commander's value sources), so that an operator who set it in a unit's
 * environment or a config file is pointed there. Only the CLI's own errors
 * (`err` a UsageError or another of `kinds`) are rewritten.
 */
export function nameOrigins(
  err: unknown,
  cmd: Command,
  kinds: readonly (abstract new (...a: never[]) => Error)[],
): void {
  if (!kinds.some((k) => err instanceof k)) return;
  const e = err as Error;
  for (const option of cmd.options) {
    const named = originOf(cmd, option);
    if (named === "" || option.long === undefined) continue;
    // The flag as a word of its own (not --nats of --nats-creds), not already named with its origin, and the value
    // right after it if there is one (quoted, or a number, path or address): the origin goes after that value.
    const flag = new RegExp(`${option.long}(?![\\w-])(?! \\(from )( "(?:[^"\\\\]|\\\\.)*"| [^\\s,;()]+)?`);
    e.message = e.message.replace(flag, (_, next: string | undefined) => {
      const [value, rest] = flagValue(next ?? "", option.argChoices);
      return `${option.long}${value}${named}${rest}`;
    });
  }
}

// What follows a flag in a message, split into its value (quoted, or a word holding a digit or one of . / : [ ~ @, as
// numbers, paths, addresses and names like ACME2 do; a trailing colon is the message's) and the rest. "--nats-cert
// and --nats-key": "and" is no value.
// A word that is one of the flag's choices (--source sim) is its value too.
function flagValue(next: string, choices: readonly string[] = []): [value: string, rest: string] {
  if (next.startsWith(' "')) return [next, ""];
  const word = next.replace(/:$/, "");
  return /[0-9./:[~@]/.test(word) || choices.includes(word.trim()) ? [word, next.slice(word.length)] : ["", next];
}

/**
 * Adds --config and --print-config to `cmd`, an env variable to every option
 * it has now (call it after the last option), and the hook that applies the
 * file and the boolean env variables before its action runs.
 */
export function addConfigOptions(cmd: Command): Command {
  for (const option of configurable(cmd)) {
    const name = envName(option);
    if (CLIENT_ENV.has(name)) throw new TypeError(`${option.long} would read ${name}, which the client commands use`);
    // For --help; commander itself reads only the env variables of options that had one when they were added.
    if (isBoolean(option)) option.description += ` (env: ${name}=true|false)`;
    else option.envVar = name;
  }
  cmd.addOption(
    new Option(
      "--config <file>",
      "read settings from this TOML file: keys are these flags' long names (port = 7878); flags and env variables override it",
    )
      .env("TASKWIRE_CONFIG"),
  );
  cmd.option("--print-config", "print the settings in effect as a config file, each with where it came from, and exit");
  return cmd.hook("preAction", (command) => applyConfig(command));
}

export function configurable(cmd: Command): Option[] {
  return cmd.options.filter((o) => !NOT_KEYS.has(o.attributeName()));
}

/** Applies the config file where values are still defaults, then the env variables where no flag set one. */
export function applyConfig(cmd: Command, env: Readonly<Record<string, string | undefined>> = process.env): void {
  const file = cmd.getOptionValue("config") as string | undefined;
  if (file !== undefined && file !== "") {
    for (const [option, value] of readConfig(cmd, file)) {
      const source = cmd.getOptionValueSource(option.attributeName());
      if (source === undefined || source === "default") {
        cmd.setOptionValueWithSource(option.attributeName(), value, "config");
      }
    }
  }
  for (const option of configurable(cmd)) {
    const name = envName(option);
    const text = env[name];
    // An empty value (TASKWIRE_PORT= in a unit file) means "not set".
    if (text === undefined || text === "" || cmd.getOptionValueSource(option.attributeName()) === "cli") continue;
    cmd.setOptionValueWithSource(option.attributeName(), envValue(option, name, text), "env");
  }
}

function envValue(option: Option, name: string, text: string): unknown {
  try {
    const tilde = isFileOption(option) ? tildeProblem(text, "an environment variable") : undefined;
    if (tilde !== undefined) throw new TypeError(tilde);
    if (!isBoolean(option)) return parsed(option, text);
    if (/^(true|1|yes|on)$/i.test(text)) return true;
    if (/^(false|0|no|off)$/i.test(text)) return false;
    throw new TypeError(`expected true or false (got ${JSON.stringify(text)})`);
  } catch (err) {
    throw new UsageError(`environment variable ${name}: ${(err as Error).message}`);
  }
}

/** The file's settings, each parsed by its flag's parser; a UsageError naming the file and the key otherwise. */
export function readConfig(cmd: Command, file: string): [Option, unknown][] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new UsageError(`--config ${file}: cannot read it: ${(err as Error).message}`);
  }
  let table: Record<string, unknown>;
  try {
    // Integers as BigInt, floats as numbers: a byte setting tells `1` from `1.0` (settingValue).
    table = parse(text, { integersAsBigInt: true });
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    const what = err.message.split("\n", 1)[0]!.replace(/^Invalid TOML document: /, "");
    throw new UsageError(`config ${file}: line ${err.line}, column ${err.column}: ${what}`);
  }
  const byKey = new Map(configurable(cmd).map((o) => [configKey(o), o]));
  return Object.entries(table).map(([key, value]) => {
    const option = byKey.get(key);
    const problem = (what: string) => new UsageError(`config ${file}: key \`${key}\`: ${what}`);
    if (option === undefined) throw problem(unknownKey(key, value, [...byKey.keys()]));
    try {
      return [option, settingValue(option, fromFile(option, value, file))];
    } catch (err) {
      throw problem((err as Error).message);
    }
  });
}

// Why `key` is no setting, and what was likely meant.
function unknownKey(key: string, value: unknown, keys: readonly string[]): string {
  if (typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date)) {
    return "settings are top-level keys (no [sections]); write each as `key = value` before any table";
  }
  // maxBuffer, max_buffer, MAX-BUFFER: the key in kebab case.
  const kebab = key.replace(/([a-z0-9])([A-Z])/g, "$1-$2").replaceAll("_", "-").toLowerCase();
  if (NOT_KEYS.has(kebab.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()))) {
    return `--${kebab} is given on the command line (or its variable), not in the file`;
  }
  const negated = /^no-(.+)$/.exec(kebab)?.[1];
  const near = negated !== undefined && keys.includes(negated)
    ? `\`${negated} = ${value === false}\`? --no-${negated} is that setting the other way round`
    : keys.includes(kebab)
    ? `\`${kebab}\`?`
    : nearest(kebab, keys, "-")?.replace(/^(.*)$/, "`$1`?");
  return `not a setting${
    near === undefined ? "" : ` (did you mean ${near})`
  }; the keys are \`taskwire serve\`'s flags without the dashes (${keys.slice(0, 4).join(", ")}, ...; see --help)`;
}

// A file flag's relative path in a config file names a file beside it (as Prometheus's and nginx's do): a unit runs
// the server in /, where a path relative to the working directory would find nothing.
// A path starting with ~ is refused before that: beside the file it would name a directory called ~.
function fromFile(option: Option, value: unknown, file: string): unknown {
  const tilde = isFileOption(option) && typeof value === "string" ? tildeProblem(value, "a config file") : undefined;
  if (tilde !== undefined) throw new TypeError(tilde);
  return relativeFile(option, value) ? resolve(baseDir(file), value) : value;
}

// Whether `value` is a file flag's relative path (a blank one is the flag's own to refuse: "is empty").
function relativeFile(option: Option, value: unknown): value is string {
  return isFileOption(option) && typeof value === "string" && value.trim() !== "" && !isAbsolute(value);
}

// The directory a config file's relative paths name files in: its own; the working directory for one that has none
// (--config <(...), /dev/stdin: a pipe, or a name under /dev or /proc).
function baseDir(file: string): string {
  try {
    if (statSync(file).isFile() && !/^\/(?:dev|proc)\//.test(resolve(file))) return dirname(file);
  } catch { /* read already; said there if not */ }
  return process.cwd();
}

// A TOML value as its flag takes it: a boolean for a flag without a value; otherwise text for the flag's parser.
function settingValue(option: Option, value: unknown): unknown {
  // An empty value in a variable means unset; in a file, leaving the key out does.
  if (value === "") throw new TypeError("is empty: give a value, or leave the key out to keep the default");
  if (isBoolean(option)) {
    if (typeof value !== "boolean") throw new TypeError(`expected true or false, got ${describe(value)}`);
    return value;
  }
  if (typeof value === "number" && option.flags.includes("<bytes")) throw new TypeError(floatBytes(option, value));
  return parsed(option, asFlagText(value));
}

// Why a byte setting refuses a TOML float, and what to write. As text `1.0` would be 1, one byte, while the string
// "1.0" is refused as no whole number of bytes: the float is refused alike, whatever its value.
function floatBytes(option: Option, value: number): string {
  const shown = Number.isInteger(value) ? value.toFixed(1) : String(value);
  const got = `expected an integer or a string with a unit ("8MiB"), got the float ${shown}`;
  // A share (--memory-budget-per-principal) of 0.25 or 1.0 meant a part of the budget.
  if (option.flags.includes("percent") && value > 0 && value <= 1) {
    const percent = Number((value * 100).toFixed(6));
    return `${got}: for ${percent}% of the budget write "${percent}%"`;
  }
  return Number.isInteger(value) && value >= 0
    ? `${got}: write ${value}, without the point`
    : `${got}: a byte count is whole; a fraction takes a unit, as a string ("1.5MiB")`;
}

// Text through the flag's own parser (its choices included), as if typed after the flag.
function parsed(option: Option, text: string): unknown {
  if (option.parseArg === undefined) return text;
  try {
    return option.parseArg(text, undefined);
  } catch (err) {
    if (!(err instanceof InvalidArgumentError)) throw err;
    // Most parsers name the value already ("got \"-5\""); say it once.
    const got = `got ${JSON.stringify(text)}`;
    throw new RangeError(err.message.includes(got) ? err.message : `${err.message} (${got})`);
  }
}

// Numbers and strings as typed on the command line; an array as the comma-separated list the flags take.
// A TOML float keeps its point (`7878.0` is "7878.0", not "7878"): a whole-number flag then refuses it as it
// refuses the string "7878.0", and a flag that takes fractions reads it alike. Integers are BigInts (readConfig).
function asFlagText(value: unknown): string {
  if (typeof value === "string" || typeof value === "bigint") return String(value);
  if (typeof value === "number") return Number.isInteger(value) ? value.toFixed(1) : String(value);
  if (Array.isArray(value) && value.every((v) => ["string", "number", "bigint"].includes(typeof v))) {
    return value.map(asFlagText).join(",");
  }
  throw new TypeError(`expected a string or a number (a list for flags that take one), got ${describe(value)}`);
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object" && value !== null) {
    return value instanceof Date || "isDate" in value ? "a date" : "a table";
  }
  // An integer is a BigInt (readConfig), which JSON.stringify refuses.
  if (typeof value === "bigint") return `number ${value}`;
  return `${typeof value === "string" ? "a string" : typeof value} ${JSON.stringify(value)}`;
}

/** The settings in effect as a TOML file, each with a comment saying where it came from. */
export function effectiveConfig(cmd: Command): string {
  const lines = ["# taskwire serve: the settings in effect (flag > env > config file > default)"];
  const file = cmd.getOptionValue("config") as string | undefined;
  if (file !== undefined && file !== "") {
    const by = cmd.getOptionValueSource("config") === "env" ? "TASKWIRE_CONFIG" : "--config";
    lines.push(`# config file: ${file} (${by}); a setting marked "config" comes from it`);
  }
  for (const option of configurable(cmd)) {
    const key = configKey(option);
    // A relative file path from a flag or a variable is relative to the working directory; in a config file it would
    // name a file beside the file: printed absolute, it loads back the same from anywhere.
    const raw: unknown = cmd.getOptionValue(option.attributeName());
    const value = tomlValue(relativeFile(option, raw) ? resolve(raw) : raw);
    const source = cmd.getOptionValueSource(option.attributeName()) ?? "unset";
    const overridden = source === "cli" && (process.env[envName(option)] ?? "") !== "";
    const from = source === "env"
      ? `env ${envName(option)}`
      : source === "cli"
      ? `flag${overridden ? ` (${envName(option)} is set too, and overridden)` : ""}`
      : source;
    lines.push(value === undefined ? `# ${key} =   # unset` : `${stringify({ [key]: value }).trim()}   # ${from}`);
  }
  return `${lines.join("\n")}\n`;
}

// What a parsed value reads back as: a share as its percentage; nothing for an unset flag, or a blank one (a config
// file refuses an empty value: leaving the key out is how it says unset).
function tomlValue(value: unknown): unknown {
  if (value === undefined || value === null || (typeof value === "string" && value.trim() === "")) return undefined;
  if (typeof value === "object" && !Array.isArray(value) && "fraction" in value) {
    // 7% is 0.07 x 100 = 7.000000000000001: printed to the precision a share is given in.
    return `${Number(((value as { fraction: number }).fraction * 100).toPrecision(12))}%`;
  }
  return value;
}
