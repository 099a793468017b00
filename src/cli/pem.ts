/**
 * PEM files named on the command line (serve's --tls-cert, --tls-key,
 * --tls-client-ca; the client commands' --ca, --cert, --key), read and
 * checked when the command starts: a file that is not PEM, or a key that is
 * not its certificate's, is a usage error naming the flag, where it used to
 * surface as OpenSSL's own words ("PEM routines::no start line") at the
 * first connection, or as an unexplained refusal of the server's certificate.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { UsageError } from "./errors.ts";

/** What a PEM file should hold. */
export type PemKind = "certificate" | "key";

/** A PEM file's text, read and parsed as `kind`; `flag` names it in the error. */
export function readPem(file: string, flag: string, kind: PemKind): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new UsageError(`${flag}: cannot read ${file}: ${(err as Error).message}`);
  }
  if (kind === "key" && /-----BEGIN (ENCRYPTED|.* ENCRYPTED)|Proc-Type: 4,ENCRYPTED/.test(text)) {
    throw new UsageError(
      `${flag}: ${file} is an encrypted key; taskwire takes no passphrase: pass it decrypted (openssl pkey -in KEY -out KEY.plain)`,
    );
  }
  try {
    parse(text, kind);
  } catch (err) {
    throw new UsageError(
      `${flag}: ${file} is not a PEM ${kind === "key" ? "private key" : "certificate"} (${oneLine(err)}); ` +
        `pass the ${kind === "key" ? "key" : "certificate"} file in PEM form (-----BEGIN ...)`,
    );
  }
  return text;
}

/** Checks that `key` is the private key of `cert` (both already read with readPem). */
export function checkKeyPair(cert: string, key: string, flags: { cert: string; key: string }): void {
  const x509 = new X509Certificate(cert);
  // Where the runtime's node:crypto lacks checkPrivateKey, the TLS handshake still refuses a wrong key.
  if (typeof x509.checkPrivateKey !== "function") return;
  if (!x509.checkPrivateKey(createPrivateKey(key))) {
    throw new UsageError(
      `${flags.key} is not the private key of ${flags.cert}'s certificate: pass the key it was made with`,
    );
  }
}

function parse(text: string, kind: PemKind): X509Certificate | KeyObject {
  return kind === "key" ? createPrivateKey(text) : new X509Certificate(text);
}

function oneLine(err: unknown): string {
  return String((err as Error).message ?? err).split("\n")[0]!;
}
