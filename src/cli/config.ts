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
import { readFileSync } from "node:fs";
import { type Command, InvalidArgumentError, Option } from "commander";
import { parse, stringify, TomlError } from "smol-toml";
import { UsageError } from "./errors.ts";

/** Options that configure the configuration, not the server: never keys, never env variables of their own. */
const NOT_KEYS = new Set(["config", "printConfig", "help", "version"]);

/** Environment variables the client commands read (--url, --token, --ca, --cert, --key); no serve key may map to one. */
export const CLIENT_ENV = new Set(["TASKWIRE_URL", "TASKWIRE_TOKEN", "TASKWIRE_CA", "TASKWIRE_CERT", "TASKWIRE_KEY"]);

/**
 * TASKWIRE_ variables that are no serve setting but are expected in a
 * server's environment: the client commands' (a shell that runs both), the
 * systemd unit's flag list (deploy/taskwire.service), the test suite's
 * switches, and --config's own.
 */
export const OTHER_ENV: ReadonlySet<string> = new Set([
  ...CLIENT_ENV,
  "TASKWIRE_CONFIG",
  "TASKWIRE_OPTS",
  "TASKWIRE_REQUIRE_NETLINK",
  "TASKWIRE_REQUIRE_INTEROP",
  "TASKWIRE_REQUIRE_BROWSER",
  "TASKWIRE_FUZZ_SCALE",
]);

/**
 * Warnings for TASKWIRE_ variables that are no setting of `cmd` (a typo,
 * TASKWIRE_MAX_STREAM, would otherwise be ignored in silence): each names
 * the variable (never its value, which may be a secret) and the nearest
 * setting.
 */
export function unknownEnv(cmd: Command, env: Readonly<Record<string, string | undefined>> = process.env): string[] {
  const known = new Set(configurable(cmd).map(envName));
  return Object.keys(env)
    .filter((name) => name.startsWith("TASKWIRE_") && !known.has(name) && !OTHER_ENV.has(name))
    .sort()
    .slice(0, 16)
    .map((name) => {
      const near = nearest(name, [...known]);
      return `environment variable ${clipName(name)} is no setting of taskwire serve and is ignored${
        near === undefined ? "" : ` (did you mean ${near}?)`
      }; \`taskwire serve --help\` lists each flag's variable`;
    });
}

const clipName = (name: string) => (name.length <= 64 ? name : `${name.slice(0, 64)}…`);

// The known name at the least edit distance after the prefix, if close (a quarter of the name at most).
function nearest(name: string, known: readonly string[]): string | undefined {
  const part = (n: string) => n.slice("TASKWIRE_".length);
  let best: string | undefined, bestDistance = Math.max(1, Math.floor(part(name).length / 4)) + 1;
  for (const k of known) {
    const d = distance(part(name), part(k));
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best;
}

// Levenshtein distance; names are short (and clipped).
function distance(a: string, b: string): number {
  if (a.length > 80 || b.length > 80) return Infinity;
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length]!;
}

/** The config key of an option: its long name in kebab case, without a `no-` (`access-log = false`). */
export function configKey(option: Option): string {
  return option.attributeName().replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** The environment variable of an option: TASKWIRE_ and its key in upper snake case. */
export function envName(option: Option): string {
  return `TASKWIRE_${configKey(option).toUpperCase().replaceAll("-", "_")}`;
}

const isBoolean = (o: Option): boolean => !o.required && !o.optional;

/**
 * How an error names `cmd`'s setting `attribute`: its flag, and where its
 * value came from when that was not the command line (an environment
 * variable, a config file's key), so that a bad value can be found where it
 * was written.
 */
export function settingName(cmd: Command, attribute: string): string {
  const option = cmd.options.find((o) => o.attributeName() === attribute);
  if (option?.long === undefined) throw new RangeError(`${cmd.name()} has no option ${attribute}`);
  const source = cmd.getOptionValueSource(attribute);
  if (source === "env") return `${option.long} (from ${option.envVar ?? envName(option)})`;
  if (source === "config") {
    return `${option.long} (from config ${cmd.getOptionValue("config") as string}, key \`${configKey(option)}\`)`;
  }
  return option.long;
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

function configurable(cmd: Command): Option[] {
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
    throw new UsageError(`config ${file}: cannot read it: ${(err as Error).message}`);
  }
  let table: Record<string, unknown>;
  try {
    table = parse(text);
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    const what = err.message.split("\n", 1)[0]!.replace(/^Invalid TOML document: /, "");
    throw new UsageError(`config ${file}: line ${err.line}, column ${err.column}: ${what}`);
  }
  const byKey = new Map(configurable(cmd).map((o) => [configKey(o), o]));
  return Object.entries(table).map(([key, value]) => {
    const option = byKey.get(key);
    const problem = (what: string) => new UsageError(`config ${file}: key \`${key}\`: ${what}`);
    if (option === undefined) {
      throw problem(
        `not a setting; the keys are \`taskwire serve\`'s flags without the dashes (${
          [...byKey.keys()].slice(0, 4).join(", ")
        }, ...; see --help)`,
      );
    }
    try {
      return [option, settingValue(option, value)];
    } catch (err) {
      throw problem((err as Error).message);
    }
  });
}

// A TOML value as its flag takes it: a boolean for a flag without a value; otherwise text for the flag's parser.
function settingValue(option: Option, value: unknown): unknown {
  if (isBoolean(option)) {
    if (typeof value !== "boolean") throw new TypeError(`expected true or false, got ${describe(value)}`);
    return value;
  }
  return parsed(option, asFlagText(value));
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
function asFlagText(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "bigint") return String(value);
  if (Array.isArray(value) && value.every((v) => typeof v === "string" || typeof v === "number")) {
    return value.join(",");
  }
  throw new TypeError(`expected a string or a number (a list for flags that take one), got ${describe(value)}`);
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object" && value !== null) {
    return value instanceof Date || "isDate" in value ? "a date" : "a table";
  }
  return `${typeof value === "string" ? "a string" : typeof value} ${JSON.stringify(value)}`;
}

/** The settings in effect as a TOML file, each with a comment saying where it came from. */
export function effectiveConfig(cmd: Command): string {
  const lines = ["# taskwire serve: the settings in effect (flag > env > config file > default)"];
  for (const option of configurable(cmd)) {
    const key = configKey(option);
    const value = tomlValue(cmd.getOptionValue(option.attributeName()));
    const source = cmd.getOptionValueSource(option.attributeName()) ?? "unset";
    const from = source === "env" ? `env ${envName(option)}` : source === "cli" ? "flag" : source;
    lines.push(value === undefined ? `# ${key} =   # unset` : `${stringify({ [key]: value }).trim()}   # ${from}`);
  }
  return `${lines.join("\n")}\n`;
}

// What a parsed value reads back as: a share as its percentage; nothing for an unset flag.
function tomlValue(value: unknown): unknown {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "object" && !Array.isArray(value) && "fraction" in value) {
    return `${(value as { fraction: number }).fraction * 100}%`;
  }
  return value;
}
