/**
 * `taskwire serve`'s authentication, exposure and per-principal flags, and
 * `taskwire token`, which makes a token and the auth file entry for it.
 */
import { type Command, InvalidArgumentError, Option } from "commander";
import { DEFAULT_ADMISSION } from "../core/admission.ts";
import { type Role, ROLES } from "../core/principal.ts";
import { DEFAULT_LIMITS } from "../core/limits.ts";
import { allowedHostProblem, isLoopbackAddress } from "../auth/hosts.ts";
import { hashToken, newToken, principalNameProblem } from "../auth/tokens.ts";
import { UsageError } from "./errors.ts";

/** The parsed flags. */
export interface AuthFlags {
  readonly tokenFile?: string | undefined;
  readonly tlsClientCa?: string | undefined;
  readonly tlsClientRoles: readonly Role[];
  readonly allowUnauthenticated: boolean;
  readonly allowedHosts: readonly string[];
  readonly maxStreams: number;
  readonly maxStreamsPerPrincipal: number;
  readonly maxCallsPerSecond: number;
  readonly maxCallsInFlight: number;
  readonly maxCallsInFlightPerPrincipal: number;
}

type IntParser = (min: number, max?: number) => (value: string) => number;

function roles(value: string): Role[] {
  const list = value.split(",").map((r) => r.trim()).filter(Boolean);
  const bad = list.filter((r) => !ROLES.includes(r as Role));
  if (bad.length > 0 || list.length === 0) throw new InvalidArgumentError(`expected roles from ${ROLES.join(", ")}`);
  return [...new Set(list)] as Role[]; // `read,read` is read once, as the auth file would list it
}

function principalName(value: string): string {
  const problem = principalNameProblem(value);
  if (problem !== undefined) throw new InvalidArgumentError(problem);
  // The parser takes the next word as the value, so `--principal --roles read` would name a principal "--roles".
  // The auth file itself may hold such a name; the command refuses to make one by mistake.
  if (value.startsWith("-")) {
    throw new InvalidArgumentError(
      `a name that starts with "-" looks like a flag: give the name right after --principal`,
    );
  }
  return value;
}

const list = (value: string): string[] => value.split(",").map((x) => x.trim()).filter(Boolean);

/** Adds the flags to `serve`. */
export function addAuthOptions(cmd: Command, int: IntParser): Command {
  return cmd
    .option(
      "--token-file <file>",
      "auth file: principals, their roles (and uids), and SHA-256 hashes of their bearer tokens (JSON; reloaded on SIGHUP; `taskwire token` makes entries)",
    )
    .option(
      "--tls-client-ca <file>",
      "ask TLS clients for a certificate; one signed by this PEM CA authenticates as its subject CN (needs --tls-cert)",
    )
    .addOption(
      new Option("--tls-client-roles <roles>", "roles of a certificate whose CN is not a principal in --token-file")
        .argParser(roles).default(["read", "subscribe"], "read,subscribe"),
    )
    .option(
      "--allow-unauthenticated",
      "serve a non-loopback address without authentication (anyone who reaches the port can use it; logged as a warning)",
    )
    .addOption(
      new Option(
        "--allowed-host <names>",
        "comma-separated Host names the server also answers to, matched exactly (DNS-rebinding guard, on for a loopback address or without authentication; it already allows loopback names, the bind address and this machine's hostname and addresses)",
      )
        .argParser(list).default([]),
    )
    .option("--max-streams <n>", "SubscribeExits streams open at once, in all", int(1), DEFAULT_ADMISSION.maxStreams)
    .option(
      "--max-streams-per-principal <n>",
      "streams one principal has open at once (without auth, one address: all of loopback counts as one, IPv6 by /64)",
      int(1),
      DEFAULT_ADMISSION.maxStreamsPerPrincipal,
    )
    .option(
      "--max-calls-per-second <n>",
      "unary calls per second per principal (bursts of twice that)",
      int(1),
      DEFAULT_ADMISSION.callsPerSecond,
    )
    .option(
      "--max-calls-in-flight <n>",
      "requests under way at once, in all (a stream until admitted); a request lasts until its response is read, so this bounds the memory of responses clients leave unread",
      int(1),
      DEFAULT_ADMISSION.maxCalls,
    )
    .option(
      "--max-calls-in-flight-per-principal <n>",
      "requests one principal has under way at once (until each response is read); more are RESOURCE_EXHAUSTED",
      int(1),
      DEFAULT_ADMISSION.maxCallsPerPrincipal,
    )
    .option(
      "--max-listeners-per-principal <n>",
      "listeners one principal owns at once",
      int(1),
      DEFAULT_LIMITS.maxListenersPerPrincipal,
    );
}

/** The flags from parsed options. */
export function authFlagsFrom(o: Record<string, unknown>): AuthFlags {
  return {
    tokenFile: o["tokenFile"] as string | undefined,
    tlsClientCa: o["tlsClientCa"] as string | undefined,
    tlsClientRoles: o["tlsClientRoles"] as Role[],
    allowUnauthenticated: o["allowUnauthenticated"] === true,
    allowedHosts: o["allowedHost"] as string[],
    maxStreams: o["maxStreams"] as number,
    maxStreamsPerPrincipal: o["maxStreamsPerPrincipal"] as number,
    maxCallsPerSecond: o["maxCallsPerSecond"] as number,
    maxCallsInFlight: o["maxCallsInFlight"] as number,
    maxCallsInFlightPerPrincipal: o["maxCallsInFlightPerPrincipal"] as number,
  };
}

// How to merge an entry into an auth file: jq's recursive merge keeps both files' principals and tokens (the entry's
// roles win for a principal in both). cli-auth.test.ts runs this very command.
const MERGE_HINT = "jq -s '.[0] * .[1]' auth.json entry.json > merged.json";

/** `taskwire token --principal NAME`: a new token, and the auth file entry that admits it. */
export function addTokenCommand(program: Command): void {
  program.command("token")
    .description(
      "make a bearer token for a principal (on stderr) and print the auth file entry for it on stdout (the file stores only the hash)",
    )
    .requiredOption("--principal <name>", "the principal the token authenticates as", principalName)
    .addOption(
      new Option(
        "--roles <roles>",
        'its roles, comma-separated: read, subscribe, metrics, admin (with read and subscribe); limit it to some uids with "uids": [1000] in its entry',
      ).argParser(roles).default([
        "read",
        "subscribe",
      ], "read,subscribe"),
    )
    .action((o: { principal: string; roles: Role[] }) => {
      if (o.roles.includes("admin") && !o.roles.includes("read") && !o.roles.includes("subscribe")) {
        console.error(
          "taskwire: note: admin widens read and subscribe to every principal's listeners and grants no call by itself; give it with them (--roles read,subscribe,admin)",
        );
      }
      const token = newToken();
      const entry = {
        principals: { [o.principal]: { roles: o.roles } },
        tokens: { [hashToken(token)]: o.principal },
      };
      // The secret on stderr, the entry alone on stdout: `taskwire token ... > auth.json` is a whole auth file for a
      // first principal, and the token never lands in it.
      console.error(`token (give it to the client; it is not stored anywhere): ${token}`);
      console.error(
        `stdout has the auth file entry (the token's SHA-256 only): a whole --token-file for a first principal; for more, merge it into the file (${MERGE_HINT}) and send the server SIGHUP`,
      );
      console.log(JSON.stringify(entry, null, 2));
    });
}

// --host written as a URL, with brackets or with a port (as in --url): said as such, not as an exposure.
function hostProblem(host: string): string | undefined {
  const shown = JSON.stringify(host.slice(0, 80));
  if (host.trim() === "") return "--host is empty: give an address (127.0.0.1, 0.0.0.0, ::1) or a name of this machine";
  const url = /^[a-z][a-z0-9+.-]*:\/\/([^/:]*)/i.exec(host);
  if (url !== null) {
    return `--host ${shown} is a URL: give the address alone (${url[1] || "127.0.0.1"}; the port is --port)`;
  }
  const bracketed = /^\[(.*)\](?::(\d+))?$/.exec(host);
  if (bracketed !== null) {
    return `--host ${shown}: give the address without brackets (${bracketed[1]}; the port is --port)`;
  }
  const withPort = /^([^:]+):(\d+)$/.exec(host);
  if (withPort !== null) return `--host ${shown} holds a port: give --host ${withPort[1]} --port ${withPort[2]}`;
  return undefined;
}

/**
 * Refuses configurations that expose the kernel's data to anyone who can
 * reach the port: a non-loopback address without authentication (unless
 * --allow-unauthenticated says so), and `--cors-origin '*'` without
 * authentication (any web page could register listeners). Returns warnings to log.
 */
export function checkExposure(
  o: { host: string; auth: AuthFlags; corsOrigins: readonly string[]; tls: boolean },
): string[] {
  const authOn = o.auth.tokenFile !== undefined || o.auth.tlsClientCa !== undefined;
  const bad = hostProblem(o.host);
  if (bad !== undefined) throw new UsageError(bad);
  for (const name of o.auth.allowedHosts) {
    const problem = allowedHostProblem(name);
    if (problem !== undefined) throw new UsageError(problem);
  }
  if (o.auth.tlsClientCa !== undefined && !o.tls) {
    throw new UsageError("--tls-client-ca needs TLS: pass --tls-cert and --tls-key too");
  }
  if (o.corsOrigins.includes("*") && !authOn) {
    throw new UsageError(
      "--cors-origin '*' without authentication would let any web page use this server; name the origins (--cors-origin https://ops.example) or turn on --token-file",
    );
  }
  if (isLoopbackAddress(o.host) || authOn) return [];
  if (!o.auth.allowUnauthenticated) {
    throw new UsageError(
      `--host ${o.host} exposes the kernel's per-task accounting beyond this machine, and no authentication is configured: ` +
        "pass --token-file FILE (bearer tokens; `taskwire token` makes them) or --tls-client-ca FILE (client certificates), " +
        "or --allow-unauthenticated if anyone who can reach the port may use it",
    );
  }
  return [
    `serving ${o.host} WITHOUT authentication (--allow-unauthenticated): anyone who reaches the port can read every task's accounting; ` +
    "requests must name this machine in Host (its hostname or an address; more with --allowed-host)",
  ];
}
