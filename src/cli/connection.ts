/**
 * How client commands reach a server: --url, and the credentials a server
 * with authentication on asks for (--token, or a client certificate), with
 * environment variables so that a token need not appear in a process list.
 */
import { createTaskwireClient, type TaskwireClient } from "@taskwire/client";
import { type Command, Option } from "commander";
import { type ConnectionFacts, UsageError } from "./errors.ts";
import { checkKeyPair, checkPemPair, type PemKind, readPem } from "./pem.ts";

/** The default server. */
export const DEFAULT_URL = "http://127.0.0.1:7878";

/** Where a client command connects, and with what. */
export interface Connection {
  readonly url: string;
  readonly token?: string | undefined;
  /** PEM files: a CA to trust for the server, a client certificate and its key. */
  readonly ca?: string | undefined;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
}

type PemSetting = "ca" | "cert" | "key";

/** Adds --url, --token, --ca, --cert and --key to a client command. */
export function addConnectionOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--url <url>", "taskwire server to talk to").env("TASKWIRE_URL").default(DEFAULT_URL))
    .addOption(
      new Option(
        "--token <token>",
        "bearer token for a server with authentication on (prefer the env var: argv is public)",
      )
        .env("TASKWIRE_TOKEN"),
    )
    .addOption(
      new Option("--ca <file>", "PEM CA to trust for an https:// server (e.g. a self-signed one)").env("TASKWIRE_CA"),
    )
    .addOption(
      new Option("--cert <file>", "PEM client certificate, for a server that authenticates clients by certificate").env(
        "TASKWIRE_CERT",
      ),
    )
    .addOption(new Option("--key <file>", "PEM private key of --cert").env("TASKWIRE_KEY"));
}

/** The connection named by a command's parsed options. */
export function connectionFrom(o: Record<string, unknown>): Connection {
  // An empty value (TASKWIRE_TOKEN= in a unit file, say) means "not set".
  const str = (k: string) => (typeof o[k] === "string" && o[k] !== "" ? (o[k] as string) : undefined);
  checkPemPair({ cert: str("cert"), key: str("key") }, { cert: "--cert", key: "--key" });
  const url = str("url") ?? DEFAULT_URL;
  if (!/^https?:\/\/[^/]/i.test(url)) {
    throw new UsageError(
      `--url ${JSON.stringify(url)} is not an http:// or https:// URL; write it whole, e.g. --url http://${
        url.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "") || "127.0.0.1:7878"
      }`,
    );
  }
  return { url, token: str("token"), ca: str("ca"), cert: str("cert"), key: str("key") };
}

/**
 * The server connection of a command that can read a fleet instead
 * (`watch`/`top --nats`): with `fleet` set its events come from NATS and no
 * server is asked, so the server settings (--url, --cert, ...) are neither
 * used nor checked; the default URL stands in.
 */
export function connectionUnlessFleet(o: Record<string, unknown>, fleet: object | undefined): Connection {
  return fleet === undefined ? connectionFrom(o) : { url: DEFAULT_URL };
}

let _last: Connection | undefined;

/** The URL of the last client made (what an error message names), and what an error's message may say of it. */
export function lastConnection(): { url: string | undefined } & ConnectionFacts {
  const c = _last;
  if (c === undefined) return { url: undefined };
  // The TLS files an http:// URL leaves unused (--cert, say): only an https:// connection presents or checks them.
  // Not an error (TASKWIRE_CERT may be set for every server), but a refusal for want of a client certificate says so.
  const unusedTls = /^http:/i.test(c.url)
    ? (["ca", "cert", "key"] as const).filter((k) => c[k] !== undefined).map((k) => `--${k}`)
    : [];
  return { url: c.url, unusedTls, ca: c.ca };
}

/** A client for the connection (files read now: a missing one is a usage error). */
export function clientFor(c: Connection): TaskwireClient {
  _last = c;
  const read = (setting: PemSetting, kind: PemKind) => {
    const file = c[setting];
    return file === undefined ? undefined : readPem(file, `--${setting}`, kind);
  };
  const tls = { ca: read("ca", "certificate"), cert: read("cert", "certificate"), key: read("key", "key") };
  if (tls.cert !== undefined && tls.key !== undefined) {
    checkKeyPair(tls.cert, tls.key, { cert: "--cert", key: "--key" });
  }
  const defined = Object.fromEntries(Object.entries(tls).filter(([, v]) => v !== undefined));
  try {
    return createTaskwireClient(c.url, {
      ...(c.token !== undefined && { token: c.token }),
      ...(Object.keys(defined).length > 0 && { tls: defined }),
    });
  } catch (err) {
    if (err instanceof TypeError) {
      throw new UsageError(/^token\b/.test(err.message) ? `--token: ${err.message}${tokenHint(c.token)}` : err.message);
    }
    throw err;
  }
}

// What is likely wrong with a token the SDK refused: a prefix the client adds itself, or a line end copied with it.
function tokenHint(token: string | undefined): string {
  if (token === undefined) return "";
  if (/^bearer\s/i.test(token)) return "; drop the `Bearer ` prefix: the client adds it";
  if (token !== token.trim()) return "; it has spaces or a line end at its start or end: copy the token alone";
  // `taskwire token`'s whole stderr (2> file): the token is on its first line, after a sentence.
  return /(?:^|[\s:])tw_[A-Za-z0-9_-]{43}(?:$|\s)/.test(token)
    ? "; it holds more than the token (`taskwire token` writes a sentence around it on stderr): copy the tw_... word alone"
    : "";
}
