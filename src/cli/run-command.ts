/**
 * `taskwire run -- CMD ARGS`: getdelays -c over the network. Subscribes on
 * every CPU first (the stream's opening message means the kernel is
 * listening), then spawns the command, keeps the exit records of its
 * process (tgid), and reports them when it has exited; returns the command's
 * exit status (128 + signal when a signal killed it, like a shell).
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { constants } from "node:os";
import { describeExit, exitEventToJson, messageToJson, TaskStatsSchema } from "@taskwire/client";
import type { Command } from "commander";
import { addConnectionOptions, clientFor, type Connection, connectionFrom } from "./connection.ts";
import { describeError, ExitStatus, FailureStatus, UsageError } from "./errors.ts";
import { bufferCapNote, openEventInput } from "./event-input.ts";
import { intArg } from "./options.ts";
import { readBootId } from "../server/host-identity.ts";
import { formatReport } from "./report.ts";
import { createRunCollector, type RunCollector, type RunResult } from "./run-collector.ts";

/** Options of `taskwire run`. */
export interface RunFlags {
  readonly conn: Connection;
  readonly argv: readonly string[];
  readonly json: boolean;
  readonly output?: string | undefined;
  readonly waitMs: number;
  readonly buffer?: number | undefined;
}

/** Registers `run` on the program. */
export function addRunCommand(program: Command): Command {
  const run = program.command("run")
    .description(
      "run a command on this machine and print its full accounting when it exits (like getdelays -c): CPU, delays by class with average and max, I/O, memory, context switches; exits with the command's status. The server must watch this machine's kernel (--source netlink here)",
    )
    .argument("<command...>", "the command and its arguments, after -- (taskwire run -- make -j4)")
    // Everything from the command's name on is the command's: `run ls -la` runs `ls -la`, and
    // `run echo --json` prints --json (it did run `echo` with taskwire's --json taken from it).
    .passThroughOptions()
    .option("--json", "print the report as JSON (see README: JSON output)")
    .option(
      "-o, --output <file>",
      "write the report to this file instead of stderr (the command keeps stdout and stderr)",
    )
    .option(
      "--wait-ms <ms>",
      "how long to wait for the exit records after the command has exited",
      intArg(1, 600_000),
      3000,
    )
    .option("--buffer <n>", "queue size to ask for, events (0: the server default)", intArg(0, 2 ** 32 - 1));
  addConnectionOptions(run);
  return run.action(async (argv: string[], o: Record<string, unknown>) => {
    if (argv.length === 0) throw new UsageError("run: name a command after --, e.g. taskwire run -- sleep 1");
    await runCommand({
      conn: connectionFrom(o),
      argv,
      json: o["json"] === true,
      output: o["output"] as string | undefined,
      waitMs: o["waitMs"] as number,
      buffer: o["buffer"] as number | undefined,
    });
  });
}

/**
 * `taskwire run`: throws ExitStatus with the command's status (or an error
 * before the command ran). The listener is registered on every CPU and one
 * stream opened on it before the spawn (its opening message: the kernel is
 * listening), so no record of the command can be missed. The tgid is known
 * only after the spawn, and a filter applies from the moment a stream opens,
 * so the events are then read by a second stream on the same listener,
 * filtered server-side to the command's tgid: what was queued in between is
 * read too (and filtered here), and nothing else crosses the network.
 */
export async function runCommand(flags: RunFlags): Promise<never> {
  // The report's file is opened first, as a shell's redirection would be: a path that cannot be written must not
  // cost a whole run of the command and then its report.
  const output = _openOutput(flags.output);
  try {
    return await _run(flags, output);
  } finally {
    if (output !== undefined) closeSync(output);
  }
}

async function _run(flags: RunFlags, output: number | undefined): Promise<never> {
  const client = clientFor(flags.conn);
  const info = await client.getInfo({});
  _sameKernel(flags.conn.url, info.source, info.host?.bootId ?? "");
  const { listenerId, buffer } = await client.register({ cpumask: info.possibleCpus, buffer: flags.buffer ?? 0 });
  const note = bufferCapNote(flags.buffer ?? 0, buffer);
  if (note !== undefined) console.error(`taskwire: ${note}`);
  const ctl = new AbortController();
  try {
    await _listening(flags, listenerId);
    const collector = createRunCollector();
    const child = _spawn(flags.argv, (pid) => {
      collector.watch(pid);
      _read(flags, listenerId, pid, collector, ctl.signal);
    });
    const status = await child;
    const result = await collector.finish(flags.waitMs);
    _report(flags, { result, status, output, delayacct: info.delayacct });
    throw new ExitStatus(status.code);
  } finally {
    ctl.abort();
    await client.deregister({ listenerId, cpumask: "all" }).catch(() => {});
  }
}

/**
 * The command runs here, so its exit records go to this machine's kernel: a
 * server on the simulated kernel, or on another kernel (its boot id differs;
 * a container shares its host's), would never send them, and the run would
 * end in "no exit record of the command arrived". Refused before anything
 * is registered or spawned.
 */
export function _sameKernel(url: string, source: string, bootId: string, localBootId = readBootId()): void {
  if (source === "sim") {
    throw new UsageError(
      `run: the server at ${url} serves the simulated kernel (--source sim), which never sees this machine's commands; the command was not run: point --url at a taskwire server with --source netlink on this machine`,
    );
  }
  if (bootId !== "" && localBootId !== "" && bootId !== localBootId) {
    throw new UsageError(
      `run: the server at ${url} watches another kernel (boot id ${bootId.slice(0, 8)}…, this machine's ${
        localBootId.slice(0, 8)
      }…), and the command would run on this machine; it was not run: point --url at a taskwire server on this machine`,
    );
  }
}

/** Opens a stream on the listener and waits for its opening message (or its error), then closes it. */
async function _listening(flags: RunFlags, listenerId: string): Promise<void> {
  const ctl = new AbortController();
  const input = openEventInput({
    conn: flags.conn,
    listener: listenerId,
    signal: ctl.signal,
    status: (line) => console.error(`taskwire: ${line}`),
    onSubscribed: () => ctl.abort(),
  });
  try {
    for await (const _ of input.events) break; // events before the spawn are not the command's
  } catch (err) {
    if (!ctl.signal.aborted) throw err;
  }
}

/** Reads the listener filtered to `tgid` into the collector until `signal` (errors end it: the report says what is missing). */
function _read(flags: RunFlags, listenerId: string, tgid: number, collector: RunCollector, signal: AbortSignal) {
  const input = openEventInput({
    conn: flags.conn,
    listener: listenerId,
    filter: { tgids: [tgid] },
    signal,
    status: (line) => console.error(`taskwire: ${line}`),
  });
  (async () => {
    for await (const ev of input.events) collector.add(ev);
  })().catch((err) => {
    if (!signal.aborted) {
      console.error(
        `taskwire: the stream of the command's records failed: ${
          describeError(err, flags.conn.url, { ca: flags.conn.ca })
        }`,
      );
    }
  });
}

interface ChildStatus {
  readonly pid: number;
  readonly code: number;
  readonly text: string;
}

// A spawn error in a shell's words (Node's alone, "spawn x ENOENT", does not say that PATH was searched). ENOENT for a
// file that is there is what runs it missing: its #! interpreter, or a program's loader (built for another system).
function whyNotStarted(command: string, err: NodeJS.ErrnoException): string {
  if (err.code === "EACCES") return `not a program this user may run (${err.message})`;
  if (err.code !== "ENOENT") return err.message;
  const file = command.includes("/") ? command : onPath(command);
  if (file !== undefined && existsSync(file)) {
    const interpreter = /^#!\s*(\S+)/.exec(head(file))?.[1];
    return interpreter === undefined
      ? `${file} is there, but the loader it needs is not (a program built for another system?) (${err.message})`
      : `${file} is there, but not its interpreter ${interpreter} (its #! line) (${err.message})`;
  }
  return `${command.includes("/") ? "no such file" : "no such command on PATH"} (${err.message})`;
}

// Where execvp finds `command` on PATH: the first regular file of that name.
function onPath(command: string): string | undefined {
  const files = (process.env["PATH"] ?? "").split(":").map((dir) => join(dir || ".", command));
  return files.find((f) => statSync(f, { throwIfNoEntry: false })?.isFile() === true);
}

// A file's first line, at most 256 bytes ("" when it cannot be read).
function head(file: string): string {
  let fd: number | undefined;
  try {
    fd = openSync(file, "r");
    const b = Buffer.alloc(256);
    return b.subarray(0, readSync(fd, b, 0, 256, 0)).toString("latin1").split("\n")[0]!;
  } catch {
    return "";
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

// SIGINT and SIGQUIT go to the whole foreground group: the command decides, taskwire stays to report (as time(1) does).
async function _spawn(argv: readonly string[], started: (pid: number) => void): Promise<ChildStatus> {
  const ignore = () => {};
  // SIGTERM and SIGHUP are sent to taskwire alone (kill, a closing terminal): pass them on, then report as usual.
  let child: ReturnType<typeof spawn> | undefined;
  const forward = (sig: NodeJS.Signals) => child?.kill(sig);
  process.on("SIGINT", ignore).on("SIGQUIT", ignore).on("SIGTERM", forward).on("SIGHUP", forward);
  try {
    child = spawn(argv[0]!, argv.slice(1), { stdio: "inherit" });
    if (child.pid !== undefined) started(child.pid);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      // The shell's statuses: 127 for a command not found, 126 for one found but not runnable.
      child!.once("error", (err) => {
        const notFound = (err as NodeJS.ErrnoException).code === "ENOENT";
        reject(
          new FailureStatus(`run: cannot start ${argv[0]}: ${whyNotStarted(argv[0]!, err)}`, notFound ? 127 : 126),
        );
      });
      child!.once("exit", (c, s) => resolve([c, s]));
    });
    if (signal !== null) {
      const n = constants.signals[signal] ?? 0;
      return { pid: child.pid!, code: 128 + n, text: describeExit(n).text };
    }
    return { pid: child.pid!, code: code ?? 1, text: `exit ${code}` };
  } finally {
    process.off("SIGINT", ignore).off("SIGQUIT", ignore).off("SIGTERM", forward).off("SIGHUP", forward);
  }
}

function _openOutput(file: string | undefined): number | undefined {
  if (file === undefined) return undefined;
  try {
    return openSync(file, "w");
  } catch (err) {
    throw new UsageError(`run: cannot write the report to ${file}: ${(err as Error).message}; the command was not run`);
  }
}

/** A finished run: what the collector gathered, how the command ended, where the report goes. */
interface Finished {
  readonly result: RunResult;
  readonly status: ChildStatus;
  /** The report's file, opened before the run; undefined: stderr. */
  readonly output: number | undefined;
  /** The server's kernel.task_delayacct. */
  readonly delayacct: boolean;
}

// A report that cannot be written to its file (a full disk) goes to stderr instead: the command has run, and its
// accounting is not to be lost.
function _report(flags: RunFlags, f: Finished): void {
  const text = flags.json ? `${JSON.stringify(_json(f.result, f.status))}\n` : _text(f);
  if (f.output !== undefined) {
    try {
      return void writeFileSync(f.output, text);
    } catch (err) {
      console.error(`taskwire: cannot write the report to ${flags.output}: ${(err as Error).message}; here it is`);
    }
  }
  process.stderr.write(text);
}

function _json(r: RunResult, status: ChildStatus) {
  return {
    command_pid: status.pid,
    status: status.text,
    exit_code: status.code,
    complete: r.complete,
    problem: r.problem ?? null,
    threads: r.threads.length,
    process: r.total === undefined ? null : messageToJson(TaskStatsSchema, r.total),
    group_delays: r.group === undefined ? null : messageToJson(TaskStatsSchema, r.group),
    losses: r.losses.map((ev) => exitEventToJson(ev)),
  };
}

function _text({ result: r, status, delayacct }: Finished): string {
  const head = `taskwire run: pid ${status.pid} ended with ${status.text}; ${r.threads.length} thread record(s)` +
    (r.group === undefined ? "" : " and the process's group record");
  if (r.total === undefined) return `${head}\n${r.problem}\n`;
  const notes = [
    ...(r.threads.length > 1 ? [`summed over ${r.threads.length} threads: CPU, delays, I/O, faults, switches`] : []),
    ...(r.problem === undefined ? [] : [r.problem]),
  ];
  return `${head}\n${formatReport(r.total, { notes, delayacct })}\n`;
}
