/**
 * Errors nobody expected (a handler's bug, a transport fault): one log
 * record each, at error level, with the message and a clipped stack as
 * fields, never the multi-line text console.error would write. A client that
 * can trigger one can trigger many, so they share a per-second line budget
 * (the rest are counted in one summary a second) and cannot fill the disk.
 */
import type { Logger } from "@logtape/logtape";
import { clip } from "../core/errors.ts";
import { createLineBudget, type LineBudget } from "./line-budget.ts";
import { type Fields, logText, STACK_MAX, taskwireLogger } from "./logger.ts";

/** Unexpected-error records per second, process-wide; the rest are counted. */
export const UNEXPECTED_ERRORS_PER_SECOND = 10;

/** Longest message field, characters. */
const MESSAGE_MAX = 512;

/** Where unexpected errors are logged, and how many a second. */
export interface ErrorLog {
  /** Logs `err` as one record saying `what` failed (within the budget), to `logger` if given. */
  (what: string, err: unknown, fields?: Fields, logger?: Logger): void;
}

/** Creates an error log over `logger` (taskwire's, as configured when each record is written, by default). */
export function createErrorLog(
  o: { logger?: Logger; perSecond?: number; now?: () => number } = {},
): ErrorLog {
  const base = (): Logger => o.logger ?? taskwireLogger();
  const budget: LineBudget = createLineBudget(
    o.perSecond ?? UNEXPECTED_ERRORS_PER_SECOND,
    (skipped) => logText(base(), "error", `${skipped} more unexpected errors in the last second were not logged`),
    o.now,
  );
  return (what, err, fields = {}, logger = base()) => {
    if (!logger.isEnabledFor("error") || !budget.take()) return;
    logText(logger, "error", what, { ...fields, ...errorFields(err) });
  };
}

/** An error's message, its name and a clipped stack, as fields. */
export function errorFields(err: unknown): Fields {
  if (!(err instanceof Error)) return { error: clip(String(err), MESSAGE_MAX) };
  return {
    error: clip(err.message, MESSAGE_MAX),
    ...(err.name !== "Error" && { errorName: clip(err.name) }),
    ...(err.stack !== undefined && { stack: clip(err.stack, STACK_MAX) }),
  };
}

/** The process's error log (one budget for every server in it). */
export const logUnexpected: ErrorLog = createErrorLog();
