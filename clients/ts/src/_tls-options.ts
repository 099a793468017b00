/**
 * Checks createTaskwireClient's `tls` option before any connection: each of
 * `ca`, `cert` and `key` is PEM text. A file's path in its place (the usual
 * slip, as the CLI's --ca takes a path) was passed on to Node, which trusted
 * nothing from it, and the call then failed with "self-signed certificate in
 * certificate chain", which does not say that the option was the problem.
 */
export function checkTlsOptions(tls: { ca?: string; cert?: string; key?: string } | undefined): void {
  for (const [name, value] of Object.entries(tls ?? {})) {
    if (value === undefined || (typeof value === "string" && value.includes("-----BEGIN "))) continue;
    // The value is not shown: a key's text without its header line would be a secret in a log.
    const got = typeof value === "string" ? `a string of ${value.length} characters` : `a ${typeof value}`;
    throw new TypeError(
      `tls.${name} holds no PEM text (-----BEGIN ...), got ${got}: pass the file's contents, not its path, ` +
        `e.g. tls: { ${name}: readFileSync(file, "utf8") }`,
    );
  }
}
