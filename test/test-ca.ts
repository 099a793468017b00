/**
 * Throwaway certificate authorities for the TLS tests, made with openssl in a
 * temporary directory: P-256 keys, one day's validity.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A certificate and its key: their files, and their PEM text. */
export interface Issued {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: string;
  readonly key: string;
}

/** A CA: its certificate, and what it signs. */
export interface TestCa extends Issued {
  readonly dir: string;
  /** A certificate this CA signed, for subject CN `cn` (and `san`, a subjectAltName such as "IP:127.0.0.1"), as `name`.pem/.key. */
  sign(name: string, o: { cn: string; san?: string }): Issued;
}

const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/** Runs openssl in `dir`. */
export function openssl(dir: string, ...args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
}

// Reads `name`.pem and `name`.key from `dir`.
function issued(dir: string, name: string): Issued {
  const certFile = join(dir, `${name}.pem`), keyFile = join(dir, `${name}.key`);
  return { certFile, keyFile, cert: readFileSync(certFile, "utf8"), key: readFileSync(keyFile, "utf8") };
}

/** A self-signed certificate (a CA's, or a server's own) for subject CN `cn`, as `name`.pem/.key in `dir`. */
export function selfSigned(dir: string, name: string, o: { cn: string; san?: string }): Issued {
  const san = o.san === undefined ? [] : ["-addext", `subjectAltName=${o.san}`];
  openssl(
    dir,
    "req",
    "-x509",
    ...EC_KEY,
    "-days",
    "1",
    "-subj",
    `/CN=${o.cn}`,
    ...san,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.pem`,
  );
  return issued(dir, name);
}

/** A new CA named `name` (its CN too) in `o.dir`, or in a new temporary directory named from `o.prefix`. */
export function createTestCa(name = "ca", o: { dir?: string; prefix?: string } = {}): TestCa {
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), o.prefix ?? "taskwire-test-ca-"));
  const own = selfSigned(dir, name, { cn: name });
  const sign = (leaf: string, s: { cn: string; san?: string }): Issued => {
    openssl(dir, "req", ...EC_KEY, "-subj", `/CN=${s.cn}`, "-keyout", `${leaf}.key`, "-out", `${leaf}.csr`);
    const ext = s.san === undefined ? [] : ["-extfile", `${leaf}.ext`];
    if (s.san !== undefined) writeFileSync(join(dir, `${leaf}.ext`), `subjectAltName=${s.san}\n`);
    // dprint-ignore
    openssl(
      dir,
      "x509",
      "-req",
      "-in",
      `${leaf}.csr`,
      "-CA",
      `${name}.pem`,
      "-CAkey",
      `${name}.key`,
      "-CAcreateserial",
      "-days",
      "1",
      ...ext,
      "-out",
      `${leaf}.pem`,
    );
    return issued(dir, leaf);
  };
  return { ...own, dir, sign };
}
