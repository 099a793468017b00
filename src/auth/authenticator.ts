/**
 * Who a request comes from: a bearer token from the auth file, or a client
 * certificate verified against --tls-client-ca (its subject CN names the
 * principal). With neither configured, every caller is anonymous with every
 * role, keyed by its address (its listeners are its own, and per-principal
 * limits apply per address).
 */
import type { Principal, Role } from "../core/principal.ts";
import { UnauthenticatedError } from "./errors.ts";
import { type AuthTable, hashToken, principalNameProblem, readAuthFile } from "./tokens.ts";

/** What the transport knows about the other end. */
export interface Peer {
  /** Remote address ("" where the runtime does not say). */
  readonly address: string;
  /** The client certificate, on a TLS connection that asked for one. */
  readonly certificate?: {
    /** It chains to the configured client CA. */
    readonly authorized: boolean;
    /** The subject's common name. */
    readonly subject: string | undefined;
    /** Why it is not authorized (Node's authorizationError). */
    readonly error?: string | undefined;
  } | undefined;
}

/** How requests authenticate. */
export interface AuthOptions {
  /** The auth file (principals and token hashes); bearer tokens authenticate when set. */
  readonly tokenFile?: string | undefined;
  /** Verified client certificates authenticate (the listener must ask for them: --tls-client-ca). */
  readonly clientCertificates?: {
    /** Roles of a certificate whose subject is not a principal in the auth file. */
    readonly defaultRoles: readonly Role[];
  } | undefined;
}

/** Authenticates requests. */
export interface Authenticator {
  /** Some authentication is configured (anonymous callers are refused). */
  readonly required: boolean;
  /** The caller's principal; throws UnauthenticatedError, saying what to send. */
  authenticate(peer: Peer | undefined, authorization: string | null | undefined): Principal;
  /** Re-reads the auth file (SIGHUP). On an error the old table stays and the error is thrown. */
  reload(): void;
  /** Bearer tokens the auth file holds now (0 without one); undefined where an authenticator does not say. */
  readonly tokens?: number;
}

const ANY_ROLE: ReadonlySet<Role> = new Set<Role>(["read", "subscribe", "admin", "metrics"]);
const NO_TABLE: AuthTable = { principals: new Map(), tokens: new Map() };

/** Creates the authenticator; reads the auth file now (AuthFileError when it is bad). */
export function createAuthenticator(options: AuthOptions = {}): Authenticator {
  return new _Authenticator(options);
}

class _Authenticator implements Authenticator {
  readonly required: boolean;
  readonly #options: AuthOptions;
  #table: AuthTable;

  constructor(options: AuthOptions) {
    this.#options = options;
    this.required = options.tokenFile !== undefined || options.clientCertificates !== undefined;
    this.#table = options.tokenFile === undefined ? NO_TABLE : readAuthFile(options.tokenFile);
  }

  reload(): void {
    if (this.#options.tokenFile !== undefined) this.#table = readAuthFile(this.#options.tokenFile);
  }

  get tokens(): number {
    return this.#table.tokens.size;
  }

  authenticate(peer: Peer | undefined, authorization: string | null | undefined): Principal {
    if (!this.required) return { id: `anonymous@${peer?.address ?? ""}`, roles: ANY_ROLE, via: "none" };
    if (authorization != null && authorization !== "") return this.#byToken(authorization);
    const cert = peer?.certificate;
    if (this.#options.clientCertificates !== undefined && cert !== undefined) return this.#byCertificate(cert);
    throw new UnauthenticatedError(`this server needs ${this.#wanted()}`);
  }

  #byToken(authorization: string): Principal {
    const m = /^Bearer ([\x21-\x7e]{1,512})$/i.exec(authorization);
    if (m === null) {
      // Two Authorization headers reach here joined by ", ", as HTTP joins repeated fields (RFC 9110, 5.3).
      const what = /,\s*Bearer\s/i.test(authorization)
        ? "send one Authorization header, not several"
        : `the Authorization header must be "Bearer <token>"`;
      throw new UnauthenticatedError(`${what}; this server needs ${this.#wanted()}`);
    }
    const name = this.#table.tokens.get(hashToken(m[1]!));
    const principal = name === undefined ? undefined : this.#table.principals.get(name);
    if (principal === undefined) {
      throw new UnauthenticatedError(
        "the bearer token is not one this server accepts (revoked, mistyped, or for another server)",
      );
    }
    return principal;
  }

  #byCertificate(cert: NonNullable<Peer["certificate"]>): Principal {
    if (!cert.authorized) {
      throw new UnauthenticatedError(
        `the client certificate is not accepted (${cert.error ?? "not signed by the configured client CA"})`,
      );
    }
    if (cert.subject === undefined || cert.subject === "") {
      throw new UnauthenticatedError("the client certificate has no subject CN to name a principal");
    }
    // Its CN is a principal's name as the auth file's are, held to the same rules: a CN of taskwire:fleet-publisher
    // owned the fleet publisher's listener (saw, streamed, took over and deregistered it), which only an admin may.
    const problem = principalNameProblem(cert.subject);
    if (problem !== undefined) {
      throw new UnauthenticatedError(
        `the client certificate's subject CN cannot name a principal: ${problem}; give the client a certificate ` +
          `with another CN`,
      );
    }
    const known = this.#table.principals.get(cert.subject);
    if (known !== undefined) return { ...known, via: "mtls" };
    return { id: cert.subject, roles: new Set(this.#options.clientCertificates!.defaultRoles), via: "mtls" };
  }

  #wanted(): string {
    const ways = [];
    if (this.#options.tokenFile !== undefined) {
      ways.push(
        "a bearer token (Authorization: Bearer <token>; the CLI's --token or TASKWIRE_TOKEN; the SDK's token option)",
      );
    }
    if (this.#options.clientCertificates !== undefined) {
      ways.push("a client certificate signed by the server's client CA");
    }
    return ways.join(" or ");
  }
}
