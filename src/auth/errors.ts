/** Authentication and authorization failures, as domain conditions (rpc/errors.ts maps them to codes). */

/** No credentials, or credentials the server does not accept. */
export class UnauthenticatedError extends Error {
  override readonly name = "UnauthenticatedError";
}

/** The caller's principal lacks the role a call needs. */
export class RoleRequiredError extends Error {
  override readonly name = "RoleRequiredError";
  readonly role: string;
  constructor(role: string, principal: string, what: string) {
    super(
      `${what} needs the "${role}" role, which principal "${principal}" does not have; ask the server's operator to grant it`,
    );
    this.role = role;
  }
}
