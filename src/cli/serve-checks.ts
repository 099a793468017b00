/**
 * Every check `taskwire serve` makes of its settings before it opens
 * anything: the settings against each other, the files they name (TLS, the
 * auth file, NATS credentials) read and parsed, and the warnings a start
 * gives. A start and --print-config run the same function, so a
 * configuration --print-config prints is one that starts (or it fails as
 * the start would).
 */
import { X509Certificate } from "node:crypto";
import { type Authenticator, createAuthenticator } from "../auth/authenticator.ts";
import { AuthFileError } from "../auth/tokens.ts";
import { resolveShare, type Share } from "../core/budget.ts";
import { formatBytes } from "../core/byte-counts.ts";
import { UsageError } from "./errors.ts";
import { checkKeyPair, checkPemPair, readPem } from "./pem.ts";
import { type AuthFlags, checkExposure } from "./serve-auth.ts";
import { checkFleet } from "./serve-nats.ts";
import { budgetPastMemory } from "../server/memory.ts";
import type { FleetOptions } from "../fleet/publisher.ts";
import type { Limits } from "../core/limits.ts";
import type { TransportLimits } from "../runtime/node.ts";

/** The settings the checks read (serve.ts's ServeFlags holds them, by the same names). */
export interface ServeSettings {
  source: "auto" | "netlink" | "sim";
  host: string;
  enableDelayacct: boolean;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  corsOrigins: readonly string[];
  auth: AuthFlags;
  limits: Partial<Limits>;
  transport: Partial<TransportLimits>;
  memoryBudget: number;
  memoryBudgetPerPrincipal: Share;
  /**
   * The settings given (a flag, a variable or a config key) with a value other than their default, by long flag
   * name: a setting that does nothing with the others is refused by name.
   */
  given: readonly string[];
  fleet?: FleetOptions | undefined;
}

// Only the real kernel's source reads these (the sim has no netlink sockets and no cgroups).
const NETLINK_ONLY = [
  "--socket-buffer",
  "--netlink-batch-window-ms",
  "--cgroup-max-threads",
  "--cgroup-max-concurrent",
  "--cgroup-timeout",
];

// Why the first setting given that does nothing with the others is refused; undefined when there is none. A value
// equal to its default is not counted: --print-config writes every default, and what it prints must load back.
function straySetting(flags: ServeSettings): string | undefined {
  const first = (test: (name: string) => boolean) => flags.given.find(test);
  const nats = flags.fleet === undefined ? first((n) => n.startsWith("--nats-")) : undefined;
  if (nats !== undefined) return `${nats} is set without --nats: pass --nats <urls> to publish to NATS, or unset it`;
  if (flags.source !== "sim") {
    const sim = first((n) => n.startsWith("--sim-"));
    if (sim !== undefined) {
      return `${sim} shapes the simulated kernel, which --source ${flags.source} does not run: ` +
        "pass --source sim, or unset it";
    }
    return undefined;
  }
  const netlink = first((n) => NETLINK_ONLY.includes(n));
  return netlink === undefined
    ? undefined
    : `${netlink} applies to the real kernel only, which --source sim does not read: unset it, or pass --source netlink`;
}

/** The TLS files a start serves with: PEM text. */
export interface ServeTls {
  cert: string;
  key: string;
  clientCa?: string;
}

/** What the checks made on the way (read files, the authenticator), and the warnings to give. */
export interface CheckedServe {
  tls: ServeTls | undefined;
  authenticator: Authenticator;
  warnings: string[];
}

/** Checks `flags` as a start does before it opens anything; a UsageError says what is wrong and what to do. */
export function checkServe(flags: ServeSettings): CheckedServe {
  checkLimits(flags);
  for (const origin of flags.corsOrigins) checkOrigin(origin);
  const tls = readTls(flags);
  const warnings = checkExposure({
    host: flags.host,
    auth: flags.auth,
    corsOrigins: flags.corsOrigins,
    tls: tls !== undefined,
  });
  if (tls !== undefined) warnings.push(...certificateDates(tls.cert, flags.tlsCert!));
  const pastMemory = budgetPastMemory(flags.memoryBudget);
  if (pastMemory !== undefined) warnings.push(pastMemory);
  const authenticator = authenticatorFor(flags.auth);
  if (flags.enableDelayacct && flags.source === "sim") {
    throw new UsageError("--enable-delayacct changes the real kernel's sysctl; it has no meaning with --source sim");
  }
  const stray = straySetting(flags);
  if (stray !== undefined) throw new UsageError(stray);
  checkFleet(flags.fleet);
  return { tls, authenticator, warnings };
}

// A CORS origin is matched exactly, case and all, against the browser's Origin header: scheme://host[:port] in
// lowercase, without a default port, path, query or user. One in another form can never match, and its web app would
// be refused without a word.
function checkOrigin(origin: string): void {
  if (origin === "*") return;
  const problem = originProblem(origin);
  const shown = JSON.stringify(origin.replace(/\/\/[^/]*@/, "//***@")); // never a password
  if (problem !== undefined) throw new UsageError(`--cors-origin ${shown} ${problem}`);
}

function originProblem(origin: string): string | undefined {
  if (origin.includes("*")) return "has a wildcard: origins are matched exactly; list each one (or '*' for all)";
  if (origin.toLowerCase() === "null") {
    return "is what sandboxed frames and files send, which any site can make: name the real origins";
  }
  let url: URL | undefined;
  for (const text of [origin, `https://${origin}`]) {
    try {
      url = new URL(text);
      break;
    } catch {
      // tried with a scheme next
    }
  }
  if (url === undefined || url.origin === "null") {
    return "is no origin a browser sends: write scheme://host[:port], e.g. https://ops.example";
  }
  if (url.origin === origin) return undefined;
  if (url.username !== "" || url.password !== "") return "holds a user or password: write scheme://host[:port] alone";
  return `can never match a browser's Origin (scheme://host[:port], lowercase, no default port or path); write ${url.origin}`;
}

/** The least one principal may be given of the budget: a listener with a few batches. */
const MIN_PRINCIPAL_SHARE = 256 * 1024;

// Settings checked against each other.
function checkLimits(flags: ServeSettings): void {
  const { defaultBuffer, maxBuffer } = flags.limits;
  if (defaultBuffer !== undefined && maxBuffer !== undefined && defaultBuffer > maxBuffer) {
    throw new UsageError(
      `--default-buffer ${defaultBuffer} exceeds --max-buffer ${maxBuffer}: lower the one or raise the other`,
    );
  }
  checkPrincipalShare(flags.memoryBudget, flags.memoryBudgetPerPrincipal);
  const { headerTimeoutMs: header, requestTimeoutMs: request } = flags.transport;
  if (header !== undefined && request !== undefined && header > request) {
    throw new UsageError(
      `--header-timeout-ms ${header} exceeds --request-timeout-ms ${request}: headers are part of the request, so their time limit must be the shorter`,
    );
  }
}

// --memory-budget-per-principal as bytes of the budget: a share too small to hold one listener made every principal's
// Register and SubscribeExits fail, as a too-small budget did.
function checkPrincipalShare(budget: number, share: Share): void {
  const bytes = resolveShare(share, budget);
  if (bytes >= MIN_PRINCIPAL_SHARE) return;
  // A bare number is bytes: "25" meant as a percentage is the likely mistake.
  const percent = typeof share === "number" && share <= 100
    ? ` (a bare number is bytes; for a percentage write ${share}%)`
    : "";
  throw new UsageError(
    `--memory-budget-per-principal gives a principal ${bytes} bytes of the ${
      formatBytes(budget)
    } --memory-budget, too few to hold a listener; give it at least 256KiB${percent}`,
  );
}

function readTls(flags: ServeSettings): ServeTls | undefined {
  checkPemPair({ cert: flags.tlsCert, key: flags.tlsKey }, { cert: "--tls-cert", key: "--tls-key" });
  if (flags.tlsCert === undefined || flags.tlsKey === undefined) return undefined;
  const cert = readPem(flags.tlsCert, "--tls-cert", "certificate");
  const key = readPem(flags.tlsKey, "--tls-key", "key");
  checkKeyPair(cert, key, { cert: "--tls-cert", key: "--tls-key" });
  const ca = flags.auth.tlsClientCa;
  const clientCa = ca === undefined ? undefined : readPem(ca, "--tls-client-ca", "certificate");
  return { cert, key, ...(clientCa && { clientCa }) };
}

// A server certificate out of its dates serves, but every client refuses it (CERT_HAS_EXPIRED): said at start.
function certificateDates(cert: string, file: string): string[] {
  const now = Date.now();
  const x509 = new X509Certificate(cert);
  const [from, to] = [Date.parse(x509.validFrom), Date.parse(x509.validTo)];
  if (to < now) {
    return [
      `--tls-cert ${file} expired on ${
        new Date(to).toISOString()
      }: clients refuse it (certificate has expired); renew it and restart`,
    ];
  }
  if (from > now) {
    return [
      `--tls-cert ${file} is not valid before ${
        new Date(from).toISOString()
      }: clients refuse it until then (certificate is not yet valid), or this machine's clock is wrong`,
    ];
  }
  return [];
}

function authenticatorFor(auth: AuthFlags): Authenticator {
  // Never read as "no file": an empty name (`--token-file=$FILE`, the variable unset) must not turn authentication off.
  if (auth.tokenFile?.trim() === "") throw new UsageError("--token-file is empty: name the auth file");
  try {
    return createAuthenticator({
      tokenFile: auth.tokenFile,
      clientCertificates: auth.tlsClientCa === undefined ? undefined : { defaultRoles: auth.tlsClientRoles },
    });
  } catch (err) {
    if (err instanceof AuthFileError) throw new UsageError(`--token-file: ${err.message}`);
    throw err;
  }
}
