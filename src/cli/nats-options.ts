/**
 * The NATS connection flags that `serve --nats` (publishing) and `watch` /
 * `top --nats` (consuming) share: credentials and TLS, from files only (never
 * a secret on the command line).
 */
import type { Command } from "commander";
import type { NatsSettings } from "../fleet/_connect.ts";
import { checkKeyPair, readPem } from "./pem.ts";

/** The connection settings these flags give. */
export type NatsConnectionFlags = Omit<NatsSettings, "servers" | "name">;

/** Each flag: its spelling, commander's key for it, the setting it fills, its help. */
const FLAGS = [
  [
    "--nats-creds <file>",
    "natsCreds",
    "credsFile",
    "a NATS credentials file (user JWT and nkey seed, as nsc makes them)",
  ],
  ["--nats-nkey <file>", "natsNkey", "nkeyFile", "a file holding an nkey user seed (SU...)"],
  ["--nats-token-file <file>", "natsTokenFile", "tokenFile", "a file holding a NATS token (its first line)"],
  ["--nats-ca <file>", "natsCa", "caFile", "PEM CA to verify NATS servers with (TLS)"],
  ["--nats-cert <file>", "natsCert", "certFile", "PEM client certificate for NATS (mutual TLS; with --nats-key)"],
  ["--nats-key <file>", "natsKey", "keyFile", "PEM private key for --nats-cert"],
] as const;

/** commander's keys of the connection flags (to tell whether any was given). */
export const NATS_CONNECTION_KEYS: readonly string[] = FLAGS.map(([, key]) => key);

/** Adds the connection flags. */
export function addNatsConnectionOptions(cmd: Command): Command {
  for (const [flag, , , help] of FLAGS) cmd.option(flag, help);
  return cmd;
}

/** The connection settings from the parsed flags. */
export function natsConnectionFrom(o: Record<string, unknown>): NatsConnectionFlags {
  const str = (k: string) => (typeof o[k] === "string" ? (o[k] as string) : undefined);
  return Object.fromEntries(FLAGS.map(([, key, setting]) => [setting, str(key)])) as NatsConnectionFlags;
}

/**
 * Reads the NATS TLS files as the client will (--nats-ca, --nats-cert,
 * --nats-key): a file that is not PEM, or a key that is not the
 * certificate's, is a usage error naming the flag, not the NATS client's
 * words at the first connection (or nothing, against a server without TLS).
 */
export function checkNatsPems(s: NatsConnectionFlags): void {
  if (s.caFile !== undefined) readPem(s.caFile, "--nats-ca", "certificate");
  const cert = s.certFile === undefined ? undefined : readPem(s.certFile, "--nats-cert", "certificate");
  const key = s.keyFile === undefined ? undefined : readPem(s.keyFile, "--nats-key", "key");
  if (cert !== undefined && key !== undefined) checkKeyPair(cert, key, { cert: "--nats-cert", key: "--nats-key" });
}
