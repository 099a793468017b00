/** The taskwire command as a user runs it: bin/taskwire.js (built by `npm test` first). */
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { createTaskwireClient } from "@taskwire/client";
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { createServer as createHttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, loopbackCertificate, spawnServer } from "./helpers.ts";
import { netlinkMissing } from "./native.ts";

const noKernel = await netlinkMissing();

const root = new URL("..", import.meta.url).pathname;
const bin = `${root}bin/taskwire.js`;
let server: ChildProcess;
let url = "";

async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)("node", [bin, ...args], {
      cwd: root,
      env: { ...process.env, TASKWIRE_URL: url },
    });
    return { code: 0, out: stdout, err: stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

/** `taskwire serve --source <source>` on a free port, with `extra` flags. */
const serve = (source: "sim" | "netlink", ...extra: string[]) =>
  spawnServer("node", [bin, "serve", "--source", source, "--port", "0", ...extra], root);

beforeAll(async () => {
  if (!existsSync(`${root}dist/src/cli/main.js`)) {
    throw new Error("dist/ is missing: run `npm run build` (npm test does it first)");
  }
  ({ url, child: server } = await serve("sim", "--sim-exit-rate", "400"));
});
afterAll(() => {
  server.kill("SIGTERM");
});

describe("taskwire CLI", () => {
  it("watch --cpus 0-1 sees exits only from CPUs 0-1", async () => {
    const r = await run("watch", "--cpus", "0-1", "--count", "40", "--json");
    expect(r.code).toBe(0);
    const events = r.out.trim().split("\n").map((l) => JSON.parse(l));
    expect(events).toHaveLength(40);
    for (const ev of events) expect([0, 1]).toContain(ev.cpu); // every field, zero values included
    expect(events.some((ev) => ev.cpu === 0)).toBe(true);
    for (const ev of events) expect(Object.keys(ev.exit.pid_stats)).toHaveLength(71);
    expect(events.every((ev) => typeof ev.exit.pid_stats.ac_comm === "string")).toBe(true);
    expect(r.err).toMatch(/watching CPUs 0-1/);
  });

  it("watch prints one readable line per exit", async () => {
    const r = await run("watch", "--cpus", "0-7", "--count", "5");
    // Each line starts with the time the server received the record (local time of day, ms).
    expect(r.out.split("\n").filter((l) => /^\d\d:\d\d:\d\d\.\d{3} cpu /.test(l))).toHaveLength(5);
    expect(r.out).toMatch(
      /^\d\d:\d\d:\d\d\.\d{3} cpu \d+ pid \d+ ppid \d+ tgid \d+ uid \d+ comm "[^"]+" (exit \d+|signal \d+ \(SIG\w+(, core)?\)) age \S+ cpu \S+s cpu-delay \S+ms io-delay \S+ms rss \S+ read \S+ write \S+ csw \d+\/\d+ seq 1$/m,
    );
    expect(r.err).toMatch(/watching CPUs 0-7 on \S+ \(sim, boot [0-9a-f]{8}\)/);
  });

  it("info and get pid/tgid print readable tables", async () => {
    const info = await run("info");
    expect(info.out).toMatch(/^source\s+sim$/m);
    expect(info.out).toMatch(/^boot id\s+[0-9a-f-]{36}$/m);
    expect(info.out).toMatch(/^subscriber drops\s+\d+\nmemory budget drops\s+\d+$/m);
    // Known by its address, counted by its bucket (as its listeners' owner is shown): said, not left to puzzle over.
    expect(info.out).toMatch(
      /^you are\s+anonymous@127\.0\.0\.1 \(roles: [^)]*\); without authentication your limits and listeners are those of anonymous@loopback/m,
    );
    const json = JSON.parse((await run("info", "--json")).out);
    expect(json.possible_cpus).toBe("0-7");
    for (
      const k of [
        "delayacct",
        "kernel_drops",
        "subscriber_drops",
        "memory_budget_drops",
        "listener_details",
        "default_buffer",
        "lease_ms",
      ]
    ) {
      expect(json).toHaveProperty(k);
    }
    // No listener yet: said, not a table's bare header.
    expect((await run("info", "--listeners")).out).toMatch(
      /\nno listeners you can see \(an admin sees every principal's\)\n$/,
    );
    const withListeners = JSON.parse((await run("info", "--json", "--listeners")).out);
    expect(Array.isArray(withListeners.listener_details)).toBe(true);
    const ev = JSON.parse((await run("watch", "--cpus", "0-7", "--count", "1", "--json")).out);
    expect(ev.exit.received_at).toMatch(/^\d{4}-\d\d-\d\dT/); // google.protobuf.Timestamp in JSON: RFC 3339
    const ppid = ev.exit.pid_stats.ac_ppid as number;
    const got = await run("get", "tgid", String(ppid));
    if (got.code === 0) expect(got.out).toMatch(/^DELAYS +class/m);
    else expect(got.err).toMatch(/NotFound: no live task with tgid/);
    const all = await run("get", "tgid", String(ppid), "--all");
    if (all.code === 0) expect(all.out).toMatch(/^cpu_delay_total\s+\d+ ns$/m);
    const dead = await run("get", "pid", String(ev.exit.pid));
    expect(dead.code).toBe(1);
    expect(dead.err).toMatch(/NotFound: no live task with pid/);
  });

  it("explains bad input and a missing server", async () => {
    const bad = await run("watch", "--cpus", "0-99", "--count", "1");
    expect(bad.code).toBe(2); // the server refused an argument: a usage error
    expect(bad.err).toMatch(/InvalidArgument: .*possible CPUs are 0-7/);
    const usage = await run("watch");
    expect(usage.code).toBe(2);
    expect(usage.err).toMatch(/--cpus/);
    const down = await run("info", "--url", "http://127.0.0.1:1");
    expect(down.code).toBe(1);
    expect(down.err).toMatch(
      /^taskwire: cannot reach a taskwire server at http:\/\/127\.0\.0\.1:1: connect ECONNREFUSED .*taskwire serve/,
    );
    const kind = await run("get", "proc", "1");
    expect(kind.code).toBe(2);
    // a kind that is neither is the parser's usage error: the choices, and where the usage is
    expect(kind.err).toBe(
      "taskwire: command-argument value 'proc' is invalid for argument 'kind'. Allowed choices are pid, tgid.\n" +
        "(run with --help for usage)\n",
    );
    // commander's own usage errors: status 2 too, in the same format
    for (
      const args of [["watch", "--bogus"], ["nope"], ["get", "pid"], ["watch", "--cpus", "0", "--buffer", "4294967296"]]
    ) {
      const r = await run(...args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.err, args.join(" ")).toMatch(/^taskwire: /);
    }
    // A guess at the server option points at --url (commander's own suggestion does not reach it).
    for (const args of [["watch", "--server", "http://x"], ["info", "--host=h"]]) {
      const r = await run(...args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.err, args.join(" ")).toMatch(
        /^taskwire: unknown option '--[a-z]+.*' \(a client command's server is --url/,
      );
    }
    // serve binds an address: its guess points at --host and --port, not at a client's --url.
    const serve = await run("serve", "--server", "0.0.0.0");
    expect(serve.code).toBe(2);
    expect(serve.err).toMatch(/^taskwire: unknown option '--server' \(serve binds with --host and --port, e\.g\./);
    expect((await run("--version")).code).toBe(0);
    // Each command's --version and -V too (options are positional, for run's sake).
    for (const args of [["serve", "--version"], ["info", "-V"], ["run", "-V"]]) {
      const r = await run(...args);
      expect({ args, code: r.code, out: r.out.trim() }).toEqual({ args, code: 0, out: (await run("-V")).out.trim() });
    }
    expect((await run("watch", "--help")).code).toBe(0);
  });

  it("serve --help lists the flags", async () => {
    const r = await run("serve", "--help");
    for (const flag of ["--source", "--host", "--port", "--sim-cpus", "--sim-exit-rate", "--sim-seed"]) {
      expect(r.out).toContain(flag);
    }
    // The per-address connection cap leaves loopback uncounted (runtime/_transport-limits.ts, SECURITY.md), unlike
    // the per-principal limits, which count all of loopback as one caller: the help must not say otherwise.
    const perAddress = r.out.slice(
      r.out.indexOf("--max-connections-per-address"),
      r.out.indexOf("--header-timeout-ms"),
    );
    expect(perAddress).toMatch(/loopback\s+is\s+not\s+counted/i);
    expect(perAddress).not.toMatch(/loopback\s+is\s+one/i);
  });
});

describe("taskwire CLI: what a newcomer gets wrong, and live tasks", () => {
  it("a --url without its scheme, and --cpus with --listener, are usage errors saying what to write", async () => {
    const noScheme = await run("info", "--url", "127.0.0.1:7878");
    expect(noScheme.code).toBe(2);
    expect(noScheme.err).toMatch(
      /--url .*"127\.0\.0\.1:7878" is not an http:\/\/ or https:\/\/ URL; .*--url http:\/\/127\.0\.0\.1:7878/,
    );
    const both = await run("watch", "--cpus", "all", "--listener", "abc");
    expect(both.code).toBe(2);
    expect(both.err).toMatch(/not both/);
  });

  it("watch --listener with an id the server does not have says where listener ids come from", async () => {
    const r = await run("watch", "--listener", "nope");
    expect(r.code).toBe(1); // the server's NOT_FOUND: a runtime error, as before
    expect(r.err).toBe(
      `taskwire: NotFound: no listener "nope" of yours on ${url}: it was never registered there, was deregistered, ` +
        "its lease ran out after its last stream ended, or it is another principal's; `taskwire info --listeners` " +
        "lists yours there, or watch --cpus <cpulist> watches through a listener of its own\n",
    );
  });

  it.skipIf(noKernel !== undefined)(
    `get pid of a live task says it is running (no exit status); --all shows ac_nice signed${
      noKernel === undefined ? "" : ` SKIPPED: ${noKernel}`
    }`,
    async () => {
      const kernel = await serve("netlink");
      try {
        // A child at nice -5 (this machine runs as root) that outlives the calls: 251 in the struct's u8.
        const child = spawn("nice", ["-n", "-5", "sleep", "30"], { stdio: "ignore" });
        try {
          await new Promise((r) => setTimeout(r, 200));
          const r = await run("get", "pid", String(child.pid), "--url", kernel.url);
          expect(r.code, r.err).toBe(0);
          expect(r.out).toMatch(/status running/);
          expect(r.out).not.toMatch(/status exit/);
          const all = await run("get", "pid", String(child.pid), "--all", "--url", kernel.url);
          expect(all.out).toMatch(/^ac_nice\s+-5$/m);
        } finally {
          child.kill("SIGKILL");
        }
      } finally {
        kernel.stop();
      }
    },
  );

  it.skipIf(noKernel !== undefined)(
    `get tgid of a thread's id names the process the kernel answered with${
      noKernel === undefined ? "" : ` SKIPPED: ${noKernel}`
    }`,
    async () => {
      const kernel = await serve("netlink");
      try {
        // The server's own threads (libuv's pool, V8's workers): ids that are no process's.
        const pid = kernel.child.pid!;
        const thread = readdirSync(`/proc/${pid}/task`).map(Number).find((t) => t !== pid)!;
        const r = await run("get", "tgid", String(thread), "--url", kernel.url);
        expect(r.code, r.err).toBe(0);
        expect(r.out).toContain(`process ${pid}: ${thread} is one of its threads, not a process`);
        const own = await run("get", "tgid", String(pid), "--url", kernel.url);
        expect(own.out).toContain(`(process ${pid}: a tgid record`);
      } finally {
        kernel.stop();
      }
    },
  );

  it("get --all with --json is a usage error, not --all silently dropped", async () => {
    const r = await run("get", "pid", "1", "--all", "--json");
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/option '--all' cannot be used with option '--json'/);
  });

  it("watch --buffer past the server's --max-buffer says the queue it got (run: cli-run.test.ts)", async () => {
    const over = await run("watch", "--cpus", "0-7", "--count", "2", "--buffer", "2000000");
    expect(over.code).toBe(0);
    expect(over.err).toMatch(/caps a queue at 1048576 events \(its --max-buffer\); this one holds that, not 2000000/);
    expect((await run("watch", "--cpus", "0-7", "--count", "2", "--buffer", "1000")).err).not.toMatch(/caps a queue/);
  });

  it("watch deregisters its listener once as it ends, not twice (no NOT_FOUND for the metrics to count)", async () => {
    const deregisters = async () => {
      const text = await (await fetch(`${url}/metrics`)).text();
      const count = (code: string) =>
        Number(
          new RegExp(`^taskwire_rpc_requests_total\\{[^}]*method="Deregister"[^}]*code="${code}"[^}]*\\} (\\d+)$`, "m")
            .exec(text)?.[1] ?? 0,
        );
      return { ok: count("ok"), notFound: count("not_found") };
    };
    const before = await deregisters();
    expect((await run("watch", "--cpus", "0-7", "--count", "2")).code).toBe(0);
    await new Promise((r) => setTimeout(r, 1500)); // past the metrics' cache, and any late second call
    const after = await deregisters();
    expect(after.ok - before.ok).toBe(1);
    expect(after.notFound - before.notFound).toBe(0);
  });

  it("TLS failures say what to do: --ca for an untrusted certificate, http:// for a plaintext server, https:// for TLS", async () => {
    const made = loopbackCertificate();
    const dir = mkdtempSync(join(tmpdir(), "taskwire-cli-tls-"));
    writeFileSync(join(dir, "s.pem"), made.cert);
    writeFileSync(join(dir, "s.key"), made.key);
    const tls = await serve("sim", "--tls-cert", join(dir, "s.pem"), "--tls-key", join(dir, "s.key"));
    try {
      const untrusted = await run("info", "--url", tls.url);
      expect(untrusted.code).toBe(1);
      expect(untrusted.err).toMatch(/cannot trust the TLS certificate of https:.*--ca FILE/);
      expect(untrusted.err).not.toMatch(/the CA given/);
      // A --ca that did not sign it is named, so the user looks at the file rather than the flag.
      writeFileSync(join(dir, "other.pem"), loopbackCertificate().cert);
      const wrong = await run("info", "--url", tls.url, "--ca", join(dir, "other.pem"));
      expect(wrong.code).toBe(1);
      expect(wrong.err).toContain(`; the CA given (--ca or TASKWIRE_CA: ${join(dir, "other.pem")}) did not sign it; `);
      expect((await run("info", "--url", tls.url, "--ca", join(dir, "s.pem"))).code).toBe(0);
      // Trusted, but made for 127.0.0.1 only: another --ca would not help, another name would.
      const name = await run("info", "--url", tls.url.replace("127.0.0.1", "localhost"), "--ca", join(dir, "s.pem"));
      expect(name.code).toBe(1);
      expect(name.err).toMatch(/TLS certificate of https:\/\/localhost:\d+ is not for that name: .*connect by a name/);
      expect(name.err).not.toMatch(/--ca FILE/);
      expect(name.err).toMatch(/\(it holds IP Address:127\.0\.0\.1\)/);
      const plain = await run("info", "--url", tls.url.replace("https:", "http:"));
      expect(plain.err).toMatch(/hung up on a plaintext request: if that server serves TLS .*use https:\/\//);
      const notTls = await run("info", "--url", url.replace("http:", "https:"));
      expect(notTls.err).toMatch(/does not answer TLS .*use http:\/\//);
    } finally {
      tls.stop();
    }
  });

  it("serve warns at start of a --tls-cert out of its dates, which every client would refuse", async () => {
    const made = loopbackCertificate();
    const dir = mkdtempSync(join(tmpdir(), "taskwire-cli-tls-"));
    writeFileSync(join(dir, "s.pem"), made.cert);
    writeFileSync(join(dir, "s.key"), made.key);
    // The same key and names, re-signed to have expired a day ago.
    execFileSync("openssl", [
      "x509",
      "-in",
      join(dir, "s.pem"),
      "-key",
      join(dir, "s.key"),
      "-days",
      "-1",
      "-out",
      join(dir, "e.pem"),
    ], {
      stdio: "pipe",
    });
    const flags = ["--source", "sim", "--port", "0", "--tls-key", join(dir, "s.key"), "--print-config"];
    const expired = await run("serve", ...flags, "--tls-cert", join(dir, "e.pem"));
    expect(expired.code).toBe(0);
    expect(expired.err).toMatch(/^taskwire: warning: --tls-cert .*e\.pem expired on \d{4}-.*: clients refuse it/m);
    expect((await run("serve", ...flags, "--tls-cert", join(dir, "s.pem"))).err).not.toMatch(/expired|not valid/);
  });

  it("serve warns at start of a --memory-budget past the memory it may use (it would never refuse before the OOM killer)", async () => {
    const past = `${Math.ceil(totalmem() / 1024 ** 3) + 1}GiB`;
    const warning =
      /^taskwire: warning: --memory-budget \d+ GiB exceeds (?:this machine's memory|this process's cgroup memory limit) \([\d.]+ [GM]iB\): the budget will never refuse a listener or drop an exit before the kernel's OOM killer ends the server; set it well below that \(a quarter is [\d.]+[GM]iB\)/m;
    const flags = ["serve", "--source", "sim", "--port", "0", "--print-config"];
    const printed = await run(...flags, "--memory-budget", past);
    expect(printed.code).toBe(0);
    expect(printed.err).toMatch(warning);
    expect((await run(...flags, "--memory-budget", "64MiB")).err).not.toMatch(/exceeds/);
    // A real start says it once, beside serve's other warnings.
    let err = "";
    const child = spawn("node", [bin, "serve", "--source", "sim", "--port", "0", "--memory-budget", past], {
      cwd: root,
    });
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    try {
      await eventually(() => /data is SIMULATED/.test(err), 15_000); // the last line a start writes
    } finally {
      child.kill("SIGTERM");
    }
    expect(err.match(new RegExp(warning.source, "gm"))).toHaveLength(1);
  });

  it("a certificate for other names, reached by address, is said with the names it holds (Node's message lists none)", async () => {
    const made = loopbackCertificate("DNS:localhost");
    const dir = mkdtempSync(join(tmpdir(), "taskwire-cli-tls-"));
    writeFileSync(join(dir, "s.pem"), made.cert);
    writeFileSync(join(dir, "s.key"), made.key);
    const tls = await serve("sim", "--tls-cert", join(dir, "s.pem"), "--tls-key", join(dir, "s.key"));
    try {
      const byAddress = await run("info", "--url", tls.url, "--ca", join(dir, "s.pem"));
      expect(byAddress.code).toBe(1);
      expect(byAddress.err).toMatch(
        /is not for that name: .*connect by a name or address it holds \(it holds DNS:localhost\)/,
      );
      expect((await run("info", "--url", tls.url.replace("127.0.0.1", "localhost"), "--ca", join(dir, "s.pem"))).code)
        .toBe(0);
    } finally {
      tls.stop();
    }
  });
});

describe("PEM files on the command line", () => {
  it("one that is not PEM, or a key that is not the certificate's, is a usage error naming the flag, before anything starts", async () => {
    const dir = mkdtempSync(join(tmpdir(), "taskwire-cli-pem-"));
    const [a, b] = [loopbackCertificate(), loopbackCertificate()];
    const file = (name: string, text: string) => (writeFileSync(join(dir, name), text), join(dir, name));
    const [cert, key, otherKey, junk] = [
      file("a.pem", a.cert),
      file("a.key", a.key),
      file("b.key", b.key),
      file("j", "x\n"),
    ];
    const middle = b.cert.replace(/(-----BEGIN CERTIFICATE-----\n)(.{10})/, "$1!!!!!!!!!!");
    const brokenBundle = file("bundle.pem", a.cert + middle + b.cert);
    const encrypted = join(dir, "e.key");
    execFileSync("openssl", ["pkcs8", "-topk8", "-v2", "aes256", "-passout", "pass:x", "-in", key, "-out", encrypted]);
    const port = ["--source", "sim", "--port", "0"];
    const cases: [string[], RegExp][] = [
      [
        ["serve", ...port, "--tls-cert", junk, "--tls-key", key],
        /^taskwire: --tls-cert: .*\/j is not a PEM certificate: pass the certificate file in PEM form/m,
      ],
      [
        ["serve", ...port, "--tls-cert", cert, "--tls-key", cert],
        /^taskwire: --tls-key: .*\/a\.pem holds a certificate, not a private key: are the certificate and the key swapped\?/m,
      ],
      [
        ["serve", ...port, "--tls-cert", key, "--tls-key", cert],
        /^taskwire: --tls-cert: .*\/a\.key holds a private key, not a certificate: are the certificate and the key swapped\?/m,
      ],
      [["serve", ...port, "--tls-cert", "", "--tls-key", key], /^taskwire: --tls-cert is empty: name a PEM file/m],
      // A CA bundle whose middle block is broken: the CAs after it would be dropped without a word.
      [
        ["info", "--ca", brokenBundle],
        /^taskwire: --ca: .*\/bundle\.pem has a certificate that does not parse \(block 2 of 3/m,
      ],
      [
        ["serve", ...port, "--tls-cert", cert, "--tls-key", otherKey],
        /^taskwire: --tls-key is not the private key of the certificate in --tls-cert/m,
      ],
      [
        ["serve", ...port, "--tls-cert", cert, "--tls-key", join(dir, "none")],
        /^taskwire: --tls-key: cannot read .*\/none: ENOENT/m,
      ],
      [["info", "--ca", junk], /^taskwire: --ca: .*\/j is not a PEM certificate/m],
      [
        ["info", "--cert", cert, "--key", encrypted],
        /^taskwire: --key: .*\/e\.key is an encrypted key; taskwire takes no passphrase/m,
      ],
      [
        ["info", "--cert", cert, "--key", otherKey],
        /^taskwire: --key is not the private key of the certificate in --cert/m,
      ],
    ];
    for (const [args, message] of cases) {
      const r = await run(...args);
      expect({ args: args.join(" "), code: r.code, err: r.err }).toMatchObject({
        code: 2,
        err: expect.stringMatching(message),
      });
      expect(r.err, "no OpenSSL code alone, no stack").not.toMatch(/^taskwire: error:|\n\s+at /m);
    }
  });

  it("one set by an environment variable or a config file is named by where it was set, beside its flag", async () => {
    const dir = mkdtempSync(join(tmpdir(), "taskwire-cli-pem-"));
    const junk = join(dir, "j"), config = join(dir, "c.toml");
    writeFileSync(junk, "x\n");
    writeFileSync(config, `tls-cert = ${JSON.stringify(junk)}\ntls-key = ${JSON.stringify(junk)}\n`);
    const runWith = async (env: Record<string, string>, ...args: string[]) => {
      const r = await promisify(execFile)("node", [bin, ...args], { cwd: root, env: { ...process.env, ...env } })
        .catch((e: { stderr: string }) => e);
      return r.stderr;
    };
    const serve = ["serve", "--source", "sim", "--port", "0"];
    expect(await runWith({ TASKWIRE_TLS_CERT: junk, TASKWIRE_TLS_KEY: junk }, ...serve)).toMatch(
      /^taskwire: --tls-cert \(from TASKWIRE_TLS_CERT\): .*\/j is not a PEM certificate/m,
    );
    expect(await runWith({}, ...serve, "--config", config)).toMatch(
      /^taskwire: --tls-cert \(from config .*\/c\.toml, key `tls-cert`\): .*\/j is not a PEM certificate/m,
    );
    expect(await runWith({ TASKWIRE_TOKEN_FILE: junk }, ...serve)).toMatch(
      /^taskwire: --token-file \(from TASKWIRE_TOKEN_FILE\): the auth file .*\/j is not JSON/m,
    );
    expect(await runWith({ TASKWIRE_CA: junk, TASKWIRE_URL: url }, "info")).toMatch(
      /^taskwire: --ca \(from TASKWIRE_CA\): .*\/j is not a PEM certificate/m,
    );
    expect(await runWith({ TASKWIRE_CERT: junk, TASKWIRE_URL: url }, "info")).toMatch(
      /^taskwire: --cert \(from TASKWIRE_CERT\) is set without --key: pass both PEM files/m,
    );
    // A token as a header would carry it, or with the line end it was copied with.
    expect(await runWith({ TASKWIRE_URL: url }, "info", "--token", "Bearer abc")).toMatch(
      /^taskwire: --token: token must be .*; drop the `Bearer ` prefix: the client adds it/m,
    );
    // `taskwire token 2> file`, and the file's text as the token: the sentence around it too.
    const stderr = `token (give it to the client; it is not stored anywhere): tw_${"A".repeat(43)}\nstdout has ...`;
    expect(await runWith({ TASKWIRE_URL: url, TASKWIRE_TOKEN: stderr }, "info")).toMatch(
      /^taskwire: --token \(from TASKWIRE_TOKEN\): token must be .*; it holds more than the token .*copy the tw_\.\.\. word alone/m,
    );
    expect(await runWith({ TASKWIRE_URL: url, TASKWIRE_TOKEN: "abc\n" }, "info")).toMatch(
      /^taskwire: --token \(from TASKWIRE_TOKEN\): token must be .*; it has spaces or a line end at its start or end/m,
    );
    // A flag beats the variable, and is named alone.
    expect(await runWith({ TASKWIRE_CA: junk, TASKWIRE_URL: url }, "info", "--ca", junk)).toMatch(
      /^taskwire: --ca: .*\/j is not a PEM certificate/m,
    );
  });
});

describe("taskwire serve: flags past what the server can honour", () => {
  it.each([
    // A lease past a timer's longest wait fired the housekeeping timer every millisecond and broke Register.
    [["--lease-ms", "4294967296"], /--lease-ms.*expected a whole number from 1 to 2147483647/],
    // A byte flag takes a unit as --memory-budget does, and says its range in bytes.
    [
      ["--send-buffer", "4GiB"],
      /--send-buffer.*expected a byte count from 0 to 2147483647, as a number or with a unit/,
    ],
    [
      ["--max-header-bytes", "1.5"],
      /--max-header-bytes.*expected a byte count from 1024 to 2147483647, .* \(expected a whole number of bytes/,
    ],
    // A unit's fraction is not floored to whole bytes in silence: 1.0001KiB is 1024.1024 bytes.
    [
      ["--send-buffer", "1.0001KiB"],
      /--send-buffer.*got "1\.0001KiB", which is 1024\.1024 bytes: write 1024 or 1025, or a fraction the unit makes whole/,
    ],
    [["--nats-max-bytes", "0.1MiB"], /--nats-max-bytes.*which is 104857\.6 bytes: write 104857 or 104858/],
    // A default heartbeat SubscribeExits itself refuses made every stream without one fail.
    [["--heartbeat-ms", "600001"], /--heartbeat-ms.*expected a whole number from 100 to 600000/],
    // 10^8 simulated exits a second kept the server from ever listening.
    [["--sim-exit-rate", "1e8"], /--sim-exit-rate.*expected a number from 0 to 1000000/],
    // A budget that holds no listener started, then refused every Register and SubscribeExits.
    [
      ["--memory-budget", "1KiB"],
      /--memory-budget.*1024 bytes is too small to hold a listener and its batches; use at least 1MiB/,
    ],
    [
      ["--memory-budget", "1MiB", "--memory-budget-per-principal", "1%"],
      /--memory-budget-per-principal gives a principal 10485 bytes of the 1 MiB --memory-budget, too few to hold a listener; give it at least 256KiB$/m,
    ],
  ])("serve %j is a usage error naming the range", async (flag, message) => {
    const r = await run("serve", "--source", "sim", "--port", "0", ...flag);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
  });
});

describe("taskwire watch: filters, fields, unreachable servers, EPIPE", () => {
  it("filters server-side by comm, uid and nonzero exit, and projects --fields", async () => {
    // The prefix most frequent among some nonzero exits: with a rare one (the sim's "ld" is ~1 in 300 nonzero
    // exits) the filtered watch below would wait a minute for its events.
    const seen = (await run("watch", "--cpus", "0-7", "--count", "20", "--json", "--nonzero-exit")).out.trim().split(
      "\n",
    )
      .map((l) => (JSON.parse(l).exit.pid_stats.ac_comm as string).slice(0, 3));
    const comm = seen.sort((a, b) => seen.filter((x) => x === b).length - seen.filter((x) => x === a).length)[0]!;
    const r = await run(
      "watch",
      "--cpus",
      "0-7",
      "--count",
      "3", // the sim's 200 exits/s, filtered to one comm prefix and nonzero exits: ~1 a second, some comms rarer
      "--json",
      "--comm",
      comm.slice(0, 3),
      "--nonzero-exit",
    );
    expect(r.code).toBe(0);
    for (const ev of r.out.trim().split("\n").map((l) => JSON.parse(l))) {
      expect(ev.exit.pid_stats.ac_comm.startsWith(comm.slice(0, 3))).toBe(true);
      expect(ev.exit.pid_stats.ac_exitcode).not.toBe(0);
    }
    const f = JSON.parse(
      (await run("watch", "--cpus", "0-7", "--count", "1", "--json", "--fields", "ac_comm,ac_uid")).out,
    );
    expect(f.exit.pid_stats.ac_utime).toBeNull(); // projected away: present, null
    expect(typeof f.exit.pid_stats.ac_comm).toBe("string");
    const u = await run("watch", "--cpus", "0-7", "--count", "3", "--json", "--uid", "0");
    for (const ev of u.out.trim().split("\n").map((l) => JSON.parse(l))) expect(ev.exit.pid_stats.ac_uid).toBe(0);
    expect((await run("watch", "--cpus", "0-7", "--fields", "no_such_field", "--count", "1")).code).toBe(2);
  }, 30_000);

  it("a server that is not there fails at once with the URL and the cause, not a silent hang", async () => {
    const started = Date.now();
    const r = await run("watch", "--cpus", "0", "--url", "http://127.0.0.1:1");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      /^taskwire: cannot reach a taskwire server at http:\/\/127\.0\.0\.1:1: connect ECONNREFUSED/m,
    );
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it(
    "a connection lost after the stream opened is retried, each retry said on stderr with the URL and cause",
    async () => {
      const own = await serve("sim");
      const child = spawn("node", [bin, "watch", "--cpus", "0-7", "--url", own.url], { cwd: root });
      let err = "";
      child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
      try {
        await new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()));
        own.stop();
        const until = Date.now() + 15_000;
        while (!/reconnecting to/.test(err) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
        const port = own.url.split(":").at(-1)!.replace(/[^0-9]/g, "");
        expect(err).toMatch(
          new RegExp(
            `^taskwire: reconnecting to http://127\\.0\\.0\\.1:${port} in \\d+\\.\\d s \\(attempt 1\\): \\S`,
            "m",
          ),
        );
        expect(child.exitCode).toBe(null); // still trying
      } finally {
        child.kill("SIGINT");
        own.stop();
      }
    },
    30_000,
  );

  it("a reader that goes away (watch | head -1) ends watch quietly with 0, its listener deregistered", async () => {
    const child = spawn("node", [bin, "watch", "--cpus", "0-7"], {
      cwd: root,
      env: { ...process.env, TASKWIRE_URL: url },
    });
    let err = "";
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once("data", () => resolve());
      child.once("exit", (c) => reject(new Error(`watch exited ${c} before its first line: ${err}`)));
    });
    const client = createTaskwireClient(url);
    expect((await client.getInfo({})).listeners).toBe(1);
    child.stdout!.destroy(); // like head exiting after its line
    const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
    expect(code).toBe(0);
    expect(err).not.toMatch(/EPIPE|Error|at /);
    expect((await client.getInfo({})).listeners).toBe(0); // right after exit: deregistered, not left to the lease
  });

  for (const command of [["watch", "--cpus", "0-7"], ["top", "--cpus", "0-7"]]) {
    it(
      `${command[0]}: SIGINT, SIGTERM and SIGHUP (a closed terminal or ssh session) each deregister before it exits`,
      async () => {
        const client = createTaskwireClient(url);
        for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
          const child = spawn("node", [bin, ...command], { cwd: root, env: { ...process.env, TASKWIRE_URL: url } });
          let err = "";
          child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
          await eventually(async () => (await client.getInfo({})).listeners === 1, 10_000);
          child.kill(signal);
          const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
          expect({ signal, code, err: err.match(/Error|at /)?.[0] }).toEqual({ signal, code: 0, err: undefined });
          expect((await client.getInfo({})).listeners, `after ${signal}: deregistered, not left to the lease`).toBe(0);
        }
      },
      40_000,
    );
  }
});

describe("taskwire serve and signals", () => {
  it("SIGHUP with no token file (a service manager's reload) keeps serving and says there is nothing to reload", async () => {
    const s = await serve("sim");
    let err = "";
    s.child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    try {
      process.kill(s.child.pid!, "SIGHUP");
      const until = Date.now() + 5000;
      while (!/SIGHUP: nothing to reload/.test(err) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      expect(err).toMatch(/SIGHUP: nothing to reload \(no --token-file\)/);
      expect(s.child.exitCode).toBe(null);
      const r = await promisify(execFile)("node", [bin, "info", "--url", s.url], { cwd: root });
      expect(r.stdout).toMatch(/^source\s+sim$/m);
    } finally {
      s.stop();
    }
  });
});

describe("another service at the URL", () => {
  it("each command says a bare HTTP status came back where a taskwire server answers, and what to check", async () => {
    const other = createHttpServer((req, res) => {
      req.resume();
      res.writeHead(req.method === "POST" ? 501 : 404).end("<html>not here</html>");
    });
    await new Promise<void>((r) => other.listen(0, "127.0.0.1", r));
    const at = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
    try {
      for (const args of [["info"], ["get", "pid", "1"], ["watch", "--cpus", "0", "--count", "1"]]) {
        const r = await run(...args, "--url", at);
        expect({ args: args[0], code: r.code }).toEqual({ args: args[0], code: 1 });
        expect(r.err).toMatch(
          /^taskwire: (http:\/\/127\.0\.0\.1:\d+ answered HTTP 501, not as a taskwire server answers|cannot reach a taskwire server at .*HTTP 501); is `taskwire serve` running there/m,
        );
      }
    } finally {
      other.close();
    }
  });

  it("a proxy's 502, 503, 504 or 429 is said as the proxy's, not as an unreachable server", async () => {
    let status = 503;
    const proxy = createHttpServer((req, res) => (req.resume(), res.writeHead(status).end("<html>bad gateway</html>")));
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    const at = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    try {
      for (
        const [code, says] of [[503, /down or overloaded/], [502, /could not get an answer/], [
          429,
          /wait, then/,
        ]] as const
      ) {
        status = code;
        const r = await run("info", "--url", at);
        expect(r.code).toBe(1);
        expect(r.err).toMatch(new RegExp(`^taskwire: ${at.replaceAll(".", "\\.")} answered HTTP ${code} \\(`, "m"));
        expect(r.err).toMatch(says);
        expect(r.err).not.toMatch(/cannot reach/);
      }
      status = 504;
      const r = await run("get", "pid", "1", "--url", at);
      expect(r.err).toMatch(/answered HTTP 504 \(a proxy or gateway that timed out/);
    } finally {
      proxy.close();
    }
  });

  it("a bare 404 (what a taskwire server answers for a method it lacks) names an older server too", async () => {
    const other = createHttpServer((req, res) => (req.resume(), res.writeHead(404).end()));
    await new Promise<void>((r) => other.listen(0, "127.0.0.1", r));
    try {
      const r = await run("info", "--url", `http://127.0.0.1:${(other.address() as AddressInfo).port}`);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(
        /answered HTTP 404 to this call: a taskwire server older than this client .* or another service/,
      );
    } finally {
      other.close();
    }
  });
});
