/**
 * Warnings about TASKWIRE_ variables: one no command reads (a typo such as
 * TASKWIRE_TOKN would otherwise be ignored in silence), named with the
 * nearest real variable, and one a flag on the command line overrides.
 * `serve` and the client commands (get, info, watch, top, run, ...) share
 * the check; each warns once. A variable's value is never shown: it may be
 * a secret.
 */
import type { Command } from "commander";
import { CLIENT_ENV, configurable, envName, isBoolean } from "./config.ts";
import { nearest } from "./nearest-name.ts";

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
  "TASKWIRE_TEST_NATS_PORTS",
]);

type Env = Readonly<Record<string, string | undefined>>;

/** What one command's check knows: the variables it reads, and the others it lets pass. */
interface EnvCheck {
  /** The command's name, as its warnings say it ("serve", "info"). */
  readonly command: string;
  /** The variables the command reads. */
  readonly own: ReadonlySet<string>;
  /** Variables expected around it that it does not read: no warning. */
  readonly expected: ReadonlySet<string>;
  /** The variables a suggestion is picked from, each with the command that reads it. */
  readonly suggest: ReadonlyMap<string, string>;
  /** Those of flags without a value (true or false): TASKWIRE_NO_X=1 is one of them set to the opposite. */
  readonly booleans: ReadonlySet<string>;
}

// serve's variables: one per setting, and --config's.
function serveEnv(serve: Command): string[] {
  return [...configurable(serve).map(envName), "TASKWIRE_CONFIG"];
}

// serve's variables of flags without a value (the client commands have none).
function serveBooleans(serve: Command): Set<string> {
  return new Set(configurable(serve).filter(isBoolean).map(envName));
}

/**
 * Warnings for TASKWIRE_ variables that are no setting of `serve` (a typo,
 * TASKWIRE_MAX_STREAM): each names the variable and the nearest setting.
 * The client commands' variables and the others in OTHER_ENV pass.
 */
export function unknownEnv(serve: Command, env: Env = process.env): string[] {
  const own = serveEnv(serve);
  return unknownOf({
    command: "serve",
    own: new Set(own),
    expected: OTHER_ENV,
    suggest: new Map(own.map((v) => [v, "serve"])),
    booleans: serveBooleans(serve),
  }, env);
}

/**
 * Warnings for TASKWIRE_ variables no command reads, for the client command
 * `cmd` (get, info, watch, ...): serve's variables and the others in
 * OTHER_ENV pass (a shell may run both). The nearest variable is picked
 * from `cmd`'s and serve's, and named with its command when it is serve's.
 */
export function unknownClientEnv(cmd: Command, serve: Command, env: Env = process.env): string[] {
  const own = cmd.options.map((o) => o.envVar).filter((v): v is string => v !== undefined);
  const suggest = new Map(serveEnv(serve).map((v) => [v, "serve"]));
  for (const v of own) suggest.set(v, cmd.name());
  return unknownOf({
    command: cmd.name(),
    own: new Set(own),
    expected: new Set([...OTHER_ENV, ...serveEnv(serve)]),
    suggest,
    booleans: serveBooleans(serve),
  }, env);
}

function unknownOf(check: EnvCheck, env: Env): string[] {
  return Object.keys(env)
    .filter((name) => name.startsWith("TASKWIRE_") && !check.own.has(name) && !check.expected.has(name))
    .sort()
    .slice(0, 16)
    .map((name) =>
      `environment variable ${clipName(name)} is no setting of taskwire ${check.command} and is ignored${
        envSuggestion(name, env[name] ?? "", check)
      }; \`taskwire ${check.command} --help\` lists each flag's variable`
    );
}

/**
 * Warnings for TASKWIRE_ variables of `cmd`'s settings that a flag
 * overrides: set in a unit's environment file while its command line
 * (TASKWIRE_OPTS) gives the same flag, they would do nothing in silence.
 * Each names the variable and the flag, never the value.
 */
export function overriddenEnv(cmd: Command, env: Env = process.env): string[] {
  const config = cmd.options.find((o) => o.attributeName() === "config");
  return [...configurable(cmd), ...(config === undefined ? [] : [config])]
    .filter((o) => cmd.getOptionValueSource(o.attributeName()) === "cli" && (env[envName(o)] ?? "") !== "")
    .map((o) => `environment variable ${envName(o)} is set, and ${o.long} on the command line overrides it`);
}

// " (did you mean X?)" for an unknown variable (set to `value`, which is never shown), or "".
function envSuggestion(name: string, value: string, check: EnvCheck): string {
  const part = (n: string) => n.slice("TASKWIRE_".length);
  const whose = (
    v: string,
  ) => (check.suggest.get(v) === check.command ? "" : `, a setting of taskwire ${check.suggest.get(v)}`);
  // TASKWIRE_NO_METRICS=1: a --no-* flag's variable is the setting's own, set to the opposite.
  const negated = /^NO_(.+)$/.exec(part(name))?.[1];
  if (negated !== undefined && check.booleans.has(`TASKWIRE_${negated}`)) {
    const opposite = /^(false|0|no|off)$/i.test(value) ? "true" : "false";
    return ` (did you mean TASKWIRE_${negated}=${opposite}${whose(`TASKWIRE_${negated}`)}?)`;
  }
  const near = nearest(part(name), [...check.suggest.keys()].map(part), "_");
  return near === undefined ? "" : ` (did you mean TASKWIRE_${near}${whose(`TASKWIRE_${near}`)}?)`;
}

const clipName = (name: string) => (name.length <= 64 ? name : `${name.slice(0, 64)}…`);
