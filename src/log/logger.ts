/**
 * taskwire's logs: LogTape (zero dependencies, the same code on Node, Deno
 * and Bun) configured once per process from --log-level and --log-format,
 * writing one line per record to stderr (stdout is the CLI's own output).
 *
 * Categories: ["taskwire"] (start-up, shutdown, transport notices),
 * ["taskwire", "audit"] (refused calls), ["taskwire", "access"] (one record
 * per RPC and per stream end). Components take a LogTape Logger as a
 * dependency; LogTape's routing (sinks, levels) is process-wide by its design,
 * so a process configures it once (`taskwire serve` does, here), and an
 * application embedding createServer configures LogTape its own way and gets
 * taskwire's records under the "taskwire" category (unconfigured, LogTape is
 * silent).
 */
import {
  configureSync,
  getJsonLinesFormatter,
  getLogger,
  type Logger,
  type LogRecord,
  type Sink,
} from "@logtape/logtape";
import { clip } from "../core/errors.ts";

/** Levels taskwire logs at, least severe first (LogTape's names). */
export const LOG_LEVELS = ["debug", "info", "warning", "error"] as const;

/** A level. */
export type Level = (typeof LOG_LEVELS)[number];

/** The line formats: human text, or one JSON object per line. */
export const LOG_FORMATS = ["text", "json"] as const;

/** A format. */
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Parses a level name; "warn" is accepted for "warning". */
export function parseLevel(text: string): Level {
  const name = text.trim().toLowerCase();
  const level = name === "warn" ? "warning" : name;
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new RangeError(`expected a log level: ${LOG_LEVELS.join(", ")} (or warn)`);
  }
  return level as Level;
}

/** Options of configureLogging. */
export interface LoggingOptions {
  /** Least severe level written (default info). */
  readonly level?: Level;
  /** Line format (default text). */
  readonly format?: LogFormat;
  /** Where each formatted line goes (default: stderr). */
  readonly write?: (line: string) => void;
  /** Takes records instead of lines (tests); `format` and `write` are then unused. */
  readonly sink?: Sink;
}

/** Configures the process's logging and returns taskwire's root logger (category ["taskwire"]). */
export function configureLogging(o: LoggingOptions = {}): Logger {
  const format = o.format === "json" ? formatJson : formatText;
  const write = o.write ?? ((line: string) => void process.stderr.write(line));
  const sink: Sink = o.sink ?? ((record) => write(format(record)));
  configureSync({
    reset: true,
    sinks: { out: sink },
    loggers: [
      { category: ["taskwire"], sinks: ["out"], lowestLevel: o.level ?? "info" },
      // LogTape's own diagnostics (a sink that throws), in the same format; "warning" also silences its greeting.
      { category: ["logtape", "meta"], sinks: ["out"], lowestLevel: "warning" },
    ],
  });
  return getLogger(["taskwire"]);
}

/** taskwire's root logger as it is configured now (silent until someone configures LogTape). */
export function taskwireLogger(): Logger {
  return getLogger(["taskwire"]);
}

/** Fields of a record: names taskwire chooses, values possibly from clients (clipped when written). */
export type Fields = Readonly<Record<string, unknown>>;

/**
 * Logs `text` as it is: LogTape reads `{name}` in a message as a placeholder,
 * and taskwire's messages carry error texts and file names, so braces are
 * escaped (`{{`, `}}`) rather than interpreted.
 */
export function logText(logger: Logger, level: Level, text: string, fields: Fields = {}): void {
  if (!logger.isEnabledFor(level)) return;
  logger[level](text.replaceAll("{", "{{").replaceAll("}", "}}"), { ...fields });
}

// time, level ("WARN" for warning), message, logger (the category joined with "."), and the fields at the top level.
const JSON_LINES = getJsonLinesFormatter({ properties: "flatten" });

// JSON.stringify leaves U+2028 and U+2029 raw (JSON allows them), but JavaScript before ES2019 and many
// line-oriented tools read them as line breaks: a client's value could split a record in two.
const SEPARATORS = /[\u2028\u2029]/g;

/** The JSON format: one object per line, U+2028/U+2029 escaped as well. */
export function formatJson(record: LogRecord): string {
  return JSON_LINES(record).replace(SEPARATORS, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
}

/**
 * The line a command that fails says last, in `format`: `taskwire: <text>`,
 * or a JSON record at level fatal, so that a service whose log is JSON Lines
 * (--log-format json) does not end it with a line its collector cannot read.
 */
export function fatalLine(text: string, format: LogFormat): string {
  if (format === "text") return `taskwire: ${text}`;
  const record: LogRecord = {
    category: ["taskwire"],
    level: "fatal",
    message: [text],
    rawMessage: text,
    timestamp: Date.now(),
    properties: {},
  };
  return formatJson(record).trimEnd();
}

/** Longest `stack` field, characters: enough for the frames that say where. */
export const STACK_MAX = 2048;

// Fields whose values are long by nature (an error's stack), clipped at STACK_MAX rather than ECHO_MAX.
const LONG_FIELDS: Readonly<Record<string, number>> = { stack: STACK_MAX };

// Characters that would let a value break out of its line or its key=value pair: C0, DEL, C1, the line and
// paragraph separators, and the bidirectional controls (which can reorder what a terminal shows).
// deno-lint-ignore no-control-regex -- matching control characters is the point: they are escaped
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const BARE = /^[\w.:/@+,%-]+$/;

/**
 * The human format, one line: `taskwire: [level: ][category: ]message key=value ...`.
 * Info, the normal level, is not spelled out, so start-up lines read as they
 * always have; a sub-category (audit, access) is.
 */
export function formatText(record: LogRecord): string {
  const level = record.level === "info" ? "" : `${record.level}: `;
  const sub = record.category[0] === "taskwire" ? record.category.slice(1) : record.category;
  const category = sub.length === 0 ? "" : `${sub.join(".")}: `;
  const message = record.message.map((part, i) => (i % 2 === 0 ? String(part) : textValue(part))).join("");
  let line = `taskwire: ${level}${category}${escapeControls(message)}`;
  for (const [key, value] of Object.entries(record.properties)) {
    if (value !== undefined) line += ` ${key}=${textValue(value, LONG_FIELDS[key])}`;
  }
  return `${line}\n`;
}

function textValue(value: unknown, max?: number): string {
  if (typeof value === "string") {
    return BARE.test(value) ? clip(value, max) : escapeControls(JSON.stringify(clip(value, max)));
  }
  if (typeof value === "number" || typeof value === "bigint" || typeof value === "boolean") return String(value);
  if (value instanceof Error) return escapeControls(JSON.stringify(clip(value.message)));
  return escapeControls(JSON.stringify(value) ?? String(value));
}

/** `text` with control characters (and U+2028/9) as \uXXXX escapes: safe to print on a terminal or in one log line. */
export function escapeControls(text: string): string {
  return text.replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
