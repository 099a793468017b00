/** `taskwire serve`'s logging flags: --log-level, --log-format, --no-access-log, --access-log-rate. */
import { type Command, InvalidArgumentError, Option } from "commander";
import { DEFAULT_ACCESS_LOG_RATE } from "../log/access-log.ts";
import { type Level, LOG_FORMATS, type LogFormat, parseLevel } from "../log/logger.ts";

/** The parsed flags. */
export interface LogFlags {
  readonly level: Level;
  readonly format: LogFormat;
  /** One record per RPC and per stream end (--no-access-log turns it off). */
  readonly accessLog: boolean;
  /** Most access lines per second (failed calls: a tenth of it). */
  readonly accessLogRate: number;
}

type IntParser = (min: number, max?: number) => (value: string) => number;

function level(value: string): Level {
  try {
    return parseLevel(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** Adds the flags to `serve`. */
export function addLogOptions(cmd: Command, int: IntParser): Command {
  return cmd
    .addOption(
      new Option(
        "--log-level <level>",
        "least severe log records written to stderr: debug, info, warning (or warn), error",
      )
        .argParser(level).default("info"),
    )
    .addOption(
      new Option(
        "--log-format <format>",
        "log lines as text (one line per record, key=value fields) or json (one object per line)",
      )
        .choices(LOG_FORMATS).default("text"),
    )
    .option(
      "--no-access-log",
      "no access log (by default: one info record per RPC and per stream end, never per event)",
    )
    .option(
      "--access-log-rate <n>",
      "most access log lines per second (failed calls: a tenth of it, since nothing else limits them); the rest are counted in one warning per second",
      int(1),
      DEFAULT_ACCESS_LOG_RATE,
    );
}

/** The flags from parsed options. */
export function logFlagsFrom(o: Record<string, unknown>): LogFlags {
  return {
    level: o["logLevel"] as Level,
    format: o["logFormat"] as LogFormat,
    accessLog: o["accessLog"] !== false,
    accessLogRate: o["accessLogRate"] as number,
  };
}
