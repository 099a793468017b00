/**
 * PEM files named on the command line (serve's --tls-cert, --tls-key,
 * --tls-client-ca; the client commands' --ca, --cert, --key), read and
 * checked when the command starts: a file that is not PEM, or a key that is
 * not its certificate's, is a usage error naming the flag, where it used to
 * surface as OpenSSL's own words ("PEM routines::no start line") at the
 * first connection, or as an unexplained refusal of the server's certificate.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { UsageError } from "./errors.ts";

/** What a PEM file should hold. */
export type PemKind = "certificate" | "key";

/** A PEM file's text, read and parsed as `kind`; `flag` names it in the error. */
export function readPem(file: string, flag: string, kind: PemKind): string {
  if (file === "") throw new UsageError(`${flag} is empty: name a PEM file`);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new UsageError(`${flag}: cannot read ${file}: ${(err as Error).message}`);
  }
  const problem = kind === "key" ? keyProblem(text) : certificateProblem(text);
  if (problem !== undefined) throw new UsageError(`${flag}: ${file} ${problem}`);
  return text;
}

const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[^-]*-----END CERTIFICATE-----/g;

// Every certificate block is parsed (a CA bundle's too: a broken block would silently drop the CAs after it).
function certificateProblem(text: string): string | undefined {
  const blocks = text.match(CERTIFICATE_BLOCK) ?? [];
  if (blocks.length === 0) {
    return /PRIVATE KEY-----/.test(text)
      ? "holds a private key, not a certificate: are the certificate and the key swapped?"
      : "is not a PEM certificate: pass the certificate file in PEM form (-----BEGIN CERTIFICATE-----)";
  }
  const opened = text.match(/-----BEGIN CERTIFICATE-----/g)!.length;
  if (opened > blocks.length) {
    return `has a certificate block without its END line (${opened} begun, ${blocks.length} whole)`;
  }
  for (const [i, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch (err) {
      return `has a certificate that does not parse (block ${i + 1} of ${blocks.length}: ${oneLine(err)})`;
    }
  }
  return undefined;
}

function keyProblem(text: string): string | undefined {
  if (/-----BEGIN (ENCRYPTED|.* ENCRYPTED)|Proc-Type: 4,ENCRYPTED/.test(text)) {
    return "is an encrypted key; taskwire takes no passphrase: pass it decrypted (openssl pkey -in KEY -out KEY.plain)";
  }
  try {
    createPrivateKey(text);
    return undefined;
  } catch (err) {
    return /-----BEGIN CERTIFICATE-----/.test(text) && !/PRIVATE KEY-----/.test(text)
      ? "holds a certificate, not a private key: are the certificate and the key swapped?"
      : `is not a PEM private key (${oneLine(err)}): pass the key file in PEM form (-----BEGIN PRIVATE KEY-----)`;
  }
}

/** Checks that a certificate file and its key file (`files`, undefined where not set) are given both or neither. */
export function checkPemPair(
  files: { cert: string | undefined; key: string | undefined },
  flags: { cert: string; key: string },
): void {
  if ((files.cert === undefined) === (files.key === undefined)) return;
  const [given, missing] = files.cert === undefined ? [flags.key, flags.cert] : [flags.cert, flags.key];
  throw new UsageError(
    `${given} is set without ${missing}: pass both PEM files (${flags.cert} and ${flags.key} go together)`,
  );
}

/** Checks that `key` is the private key of `cert` (both already read with readPem). */
export function checkKeyPair(cert: string, key: string, flags: { cert: string; key: string }): void {
  const x509 = new X509Certificate(cert);
  // Where the runtime's node:crypto lacks checkPrivateKey, the TLS handshake still refuses a wrong key.
  if (typeof x509.checkPrivateKey !== "function") return;
  if (!x509.checkPrivateKey(createPrivateKey(key))) {
    throw new UsageError(
      `${flags.key} is not the private key of the certificate in ${flags.cert}: pass the key it was made with (the file's first certificate must be its own, before any chain)`,
    );
  }
}

function oneLine(err: unknown): string {
  return String((err as Error).message ?? err).split("\n")[0]!;
}
