/**
 * Checks createTaskwireClient's `tls` option before any connection: each of
 * `ca`, `cert` and `key` is PEM text, as a string or bytes (a Buffer from
 * readFileSync), or an array of those, as Node takes them. A file's path in
 * its place (the usual slip, as the CLI's --ca takes a path) was passed on to
 * Node, which trusted nothing from it, and the call then failed with
 * "self-signed certificate in certificate chain", which does not say that the
 * option was the problem; so was a DER file's bytes. Other keys are Node's to
 * judge.
 */

/** PEM text: a string, bytes, or an array of either (several certificates). */
export type PemInput = string | Uint8Array | readonly (string | Uint8Array)[];

/** The tls option of createTaskwireClient. */
export interface TlsInput {
  ca?: PemInput;
  cert?: PemInput;
  key?: PemInput;
}

const PEM = "-----BEGIN ";

// How to turn a DER file into PEM, per setting.
const FROM_DER = {
  ca: "openssl x509 -inform der -in ca.der -out ca.pem",
  cert: "openssl x509 -inform der -in cert.der -out cert.pem",
  key: "openssl pkey -inform der -in key.der -out key.pem",
} as const;

/** Throws a TypeError when `tls.ca`, `tls.cert` or `tls.key` holds no PEM text (the value is never shown). */
export function checkTlsOptions(tls: TlsInput | undefined): void {
  for (const name of ["ca", "cert", "key"] as const) {
    const value: unknown = tls?.[name];
    const got = value === undefined ? undefined : notPem(value);
    if (got === undefined) continue;
    const fix = got.includes("bytes")
      ? `convert a DER file to PEM first (${FROM_DER[name]})`
      : `pass the file's contents, not its path, e.g. tls: { ${name}: readFileSync(file, "utf8") }`;
    throw new TypeError(`tls.${name} holds no PEM text (${PEM}...), got ${got}: ${fix}`);
  }
}

// What `v` is when it holds no PEM text, else undefined. A key's text without its header line would be a secret in
// a log: only a length is said.
function notPem(v: unknown): string | undefined {
  if (Array.isArray(v)) {
    const i = v.findIndex((x) => notPem(x) !== undefined);
    return i < 0 ? undefined : `an array whose element ${i} is ${notPem(v[i])}`;
  }
  if (typeof v === "string") return v.includes(PEM) ? undefined : `a string of ${v.length} characters`;
  if (v instanceof Uint8Array) {
    return new TextDecoder().decode(v).includes(PEM) ? undefined : `${v.length} bytes (DER?)`;
  }
  return `a ${v === null ? "null" : typeof v}`;
}
