/** The `taskwire` command line: serve | get | watch | info | cgroup. */
import { Argument, Command, CommanderError, Option } from "commander";
import { ListenError } from "../runtime/listen.ts";
import { VERSION } from "../version.ts";
import { getCommand, infoCommand } from "./client-commands.ts";
import { addWatchCommand } from "./watch-command.ts";
import { addTopCommand } from "./top-command.ts";
import { intArg } from "./options.ts";
import { addRunCommand } from "./run-command.ts";
import { describeError, exitCodeFor } from "./errors.ts";
import { escapeControls, fatalLine, type LogFormat } from "../log/logger.ts";
import { lastConnection } from "./connection.ts";
import { cgroupCommand } from "./cgroup-command.ts";
import { addConnectionOptions, connectionFrom } from "./connection.ts";
import { addTokenCommand } from "./serve-auth.ts";
import { nameOrigins } from "./config.ts";
import { unknownClientEnv } from "./env-warnings.ts";
import { failureLogFormat } from "./failure-log-format.ts";
import { refuseTildePaths } from "./tilde-paths.ts";
import { FleetStartError } from "./serve-nats.ts";
import { SourceError, UsageError } from "./serve.ts";
import { addServeCommand } from "./_serve-command.ts";

const int = intArg;

// Names a client command's server is often guessed as. commander suggests only near spellings of a real option,
// and --url is not near any of these.
const URL_GUESS = /^unknown option '--(server|host|endpoint|address|addr|connect)(=[^']*)?'/;

// commander's error text, with a pointer to --url where the option was a guess at it (to --host and --port for serve,
// which binds an address rather than naming a server).
function withHint(text: string, serve = false): string {
  if (!URL_GUESS.test(text)) return text;
  const hint = serve
    ? "serve binds with --host and --port, e.g. --host 0.0.0.0 --port 7878"
    : "a client command's server is --url, e.g. --url http://HOST:7878";
  return text.replace(/\n?$/, ` (${hint})\n`);
}

function buildProgram(): Command {
  const program = new Command("taskwire")
    .description("Linux taskstats (per-task CPU, delay, memory and I/O accounting) as a network service")
    .version(VERSION)
    // Options are the command's that they follow: what follows `run`'s command is that command's (run-command.ts).
    .enablePositionalOptions()
    .showHelpAfterError("(run with --help for usage)")
    // Usage errors from commander itself exit 2 like ours, in the same "taskwire: ..." format (inherited by subcommands).
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`taskwire: ${withHint(text.replace(/^error: /, ""))}`) });

  addServeCommand(program);

  const get = program.command("get")
    .description(
      "stats of a live task: get pid <N> (a thread) or get tgid <N> (a process, summed over its threads by the kernel)",
    )
    .addArgument(new Argument("<kind>", "what <id> is: pid, a thread; tgid, a process").choices(["pid", "tgid"]))
    .argument("<id>", "thread or process id", int(1, 2 ** 32 - 1))
    .addOption(new Option("--all", "every raw field, one per line, with units").conflicts("json"))
    .option("--json", "print JSON: every field, kernel names (see README: JSON output)")
    .action(async (kind: string, id: number, o: { json?: boolean; all?: boolean }) => {
      await getCommand(
        connectionFrom(o),
        kind as "pid" | "tgid",
        id,
        o.json === true ? "json" : o.all === true ? "all" : "summary",
      );
    });
  addConnectionOptions(get);
  const watch = addWatchCommand(program);
  addTopCommand(program);
  addRunCommand(program);

  const info = program.command("info")
    .description("what the server is: source, kernel, CPUs, counters")
    .option("--json", "print JSON: every GetInfo field (see README: JSON output)")
    .option(
      "--listeners",
      "also list your listeners (every listener, with the admin role): queue depth, drops, events/s",
    )
    .action(async (o: { json?: boolean; listeners?: boolean }) =>
      infoCommand(connectionFrom(o), o.json === true, o.listeners === true)
    );
  const cgroup = program.command("cgroup")
    .description("tasks of a cgroup by state, like getdelays -C (a directory under /sys/fs/cgroup on the server)")
    .argument("<path>", "cgroup directory on the server, e.g. /sys/fs/cgroup/cpu/batch")
    .option("--json", "print JSON, every field")
    .action(async (path: string, o: { json?: boolean }) => cgroupCommand(connectionFrom(o), path, o.json === true));
  void watch; // registered with its connection options by addWatchCommand
  addConnectionOptions(info);
  addConnectionOptions(cgroup);
  addTokenCommand(program);
  // With positional options (above) the program's --version reaches only `taskwire --version`: each command takes it
  // too, as `taskwire serve --version` and `taskwire info -V` did before.
  for (const command of program.commands) command.version(VERSION);
  return program;
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  let ran: Command | undefined; // the command whose action runs, for where its settings came from
  let settled = false; // serve's settings are all in: its flags parsed, the config file and the variables applied
  let usage: string | undefined; // serve's command-line usage error (commander's), written below in its log format
  const program = buildProgram();
  const serve = program.commands.find((c) => c.name() === "serve")!;
  // commander writes its usage errors as it finds them; serve's may have to be a JSON record, so they are kept for the
  // catch below, which knows the format (and adds the help hint in text).
  serve.showHelpAfterError(false).configureOutput({ outputError: (text) => void (usage = text) });
  serve.hook("preAction", () => void (settled = true)); // after addConfigOptions' hook, which applies the rest
  try {
    await program
      .hook("preAction", (_program, command) => void (ran = command))
      // Every command's file paths: a ~ no shell expanded is refused (tilde-paths.ts). A program's hooks run before
      // serve's own, which reads --config and checks the paths in it, and in serve's variables, as it applies them.
      .hook("preAction", (_program, command) => refuseTildePaths(command))
      // serve warns of its own, once its logging is set up (its log format may be JSON).
      .hook("preAction", (_program, command) => {
        if (command === serve) return;
        for (const w of unknownClientEnv(command, serve)) console.error(`taskwire: warning: ${escapeControls(w)}`);
      })
      .parseAsync([...argv], { from: "user" });
    return 0;
  } catch (err) {
    if (ran !== undefined) nameOrigins(err, ran, [UsageError, SourceError, FleetStartError, ListenError]);
    const format = ran === serve || usage !== undefined ? serveFailureFormat(serve, settled, argv) : "text";
    if (usage !== undefined) {
      const message = withHint(usage.replace(/^error: /, ""), true).trimEnd();
      // A JSON record without the hint: its reader is a log collector's user, not a person at the terminal.
      console.error(
        format === "json" ? fatalLine(message, "json") : `taskwire: ${message}\n(run with --help for usage)`,
      );
    }
    // commander has printed its own usage errors (in the same format, see configureOutput; serve's just above)
    const last = lastConnection();
    const text = err instanceof CommanderError ? "" : describeError(err, last.url, last);
    if (text !== "") console.error(fatalLine(text, format));
    return exitCodeFor(err);
  }
}

// The format of the line a failed serve ends with: serve's --log-format json, but text for --print-config (its
// reader is a person at a terminal). Once its settings are all in, their value; before (a usage error on the
// command line, a bad variable or config key), the same precedence read from where they would come from
// (failureLogFormat), so that a JSON log does not end with a line of text whichever setting was wrong, wherever
// --log-format json was given.
function serveFailureFormat(serve: Command, settled: boolean, argv: readonly string[]): LogFormat {
  if (!settled) return failureLogFormat(serve, argv.slice(argv.indexOf("serve") + 1));
  const opts = serve.opts();
  return opts["logFormat"] === "json" && opts["printConfig"] !== true ? "json" : "text";
}
