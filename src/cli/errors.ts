/** Errors the CLI reports without a stack. */

/** A usage problem (a bad flag, a file that cannot be read): exit status 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}
