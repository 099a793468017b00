/**
 * `taskwire serve --config FILE` and TASKWIRE_* variables, through the built
 * CLI: precedence flag > env > file > default (read from the start-up line,
 * which names the possible CPUs --sim-cpus made), every flag a key and a
 * variable, and a bad file (or variable) exits 2 naming the key and the problem.
 */
import { execFile, execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { spawnServer } from "./helpers.ts";
import { tildeProblem } from "../src/cli/tilde-paths.ts";

const root = resolve(import.meta.dirname, "..");
const bin = resolve(root, "dist/src/cli/run.js");
const dir = mkdtempSync(join(tmpdir(), "taskwire-config-"));
// The variables these tests set, cleared from the inherited environment so a developer's own do not leak in.
const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("TASKWIRE_")));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

async function run(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [bin, ...args], {
      env: { ...clean, ...env },
    });
    return { code: 0, out: stdout, err: stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

// The possible CPUs a served sim source reports (--sim-cpus N: 0-(N-1)), asked with GetInfo.
async function servedCpus(args: string[], env: Record<string, string> = {}): Promise<string> {
  const saved = process.env;
  process.env = { ...clean, ...env }; // spawnServer's child inherits it
  let s: Awaited<ReturnType<typeof spawnServer>>;
  try {
    s = await spawnServer(process.execPath, [bin, "serve", "--source", "sim", "--port", "0", ...args], root);
  } finally {
    process.env = saved;
  }
  try {
    const info = await fetch(`${s.url}/taskwire.v1.TaskStats/GetInfo`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    return ((await info.json()) as { possibleCpus: string }).possibleCpus;
  } finally {
    s.stop();
  }
}

beforeAll(() => {
  execFileSync("npm", ["run", "build"], { cwd: root, stdio: "ignore" });
}, 120_000);

describe("precedence", () => {
  const conf = () => file("cpus.toml", "# two CPUs\nsim-cpus = 2\n");

  it("default < file < env < flag", async () => {
    expect(await servedCpus([])).toBe("0-7");
    expect(await servedCpus(["--config", conf()])).toBe("0-1");
    expect(await servedCpus(["--config", conf()], { TASKWIRE_SIM_CPUS: "3" })).toBe("0-2");
    expect(await servedCpus(["--config", conf(), "--sim-cpus", "4"], { TASKWIRE_SIM_CPUS: "3" })).toBe("0-3");
    // TASKWIRE_CONFIG names the file.
    expect(await servedCpus([], { TASKWIRE_CONFIG: conf() })).toBe("0-1");
  }, 60_000);

  it("--print-config shows every setting with its source; booleans take true/false from file and env", async () => {
    const path = file(
      "all.toml",
      [
        'source = "sim"',
        "port = 7000",
        'memory-budget = "256MiB"',
        'memory-budget-per-principal = "25%"',
        'cors-origin = ["https://a.example", "https://b.example"]',
        "compress = true",
        "access-log = false",
        'log-level = "warn"',
      ].join("\n"),
    );
    const r = await run(["serve", "--config", path, "--print-config", "--port", "7001"], {
      TASKWIRE_COMPRESS: "false",
      TASKWIRE_LOG_FORMAT: "json",
    });
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^port = 7001 {3}# flag$/m);
    expect(r.out).toMatch(/^compress = false {3}# env TASKWIRE_COMPRESS$/m);
    expect(r.out).toMatch(/^log-format = "json" {3}# env TASKWIRE_LOG_FORMAT$/m);
    expect(r.out).toMatch(/^log-level = "warning" {3}# config$/m);
    expect(r.out).toMatch(/^access-log = false {3}# config$/m);
    expect(r.out).toMatch(/^memory-budget = 268435456 {3}# config$/m);
    expect(r.out).toMatch(/^memory-budget-per-principal = "25%" {3}# config$/m);
    expect(r.out).toMatch(/^cors-origin = "https:\/\/a.example,https:\/\/b.example" {3}# config$/m);
    expect(r.out).toMatch(/^max-streams = 1024 {3}# default$/m);
    // Every long flag of `serve --help` is a key (or, unset, a commented one).
    const help = (await run(["serve", "--help"])).out;
    const flags = [...help.matchAll(/--(?:no-)?([a-z0-9-]+)/g)].map((m) => m[1]!)
      .filter((f) => !["config", "print-config", "help", "version"].includes(f));
    for (const f of new Set(flags)) expect(r.out, f).toMatch(new RegExp(`^(# )?${f} =`, "m"));
    // The printed settings read back as a config file.
    const again = await run(["serve", "--config", file("printed.toml", r.out), "--print-config"]);
    expect(again.code, again.err).toBe(0);
  }, 30_000);
});

describe("bad settings exit 2 naming the key and the problem", () => {
  const cases: [string, string, RegExp][] = [
    ["unknown key", "prot = 1\n", /key `prot`: not a setting/],
    ["wrong type", "port = true\n", /key `port`: expected a string or a number.*got boolean true/],
    ["bad value", "port = 70000\n", /key `port`: expected a whole number from 0 to 65535 \(got "70000"\)/],
    ["bad choice", 'log-format = "xml"\n', /key `log-format`: Allowed choices are text, json/],
    ["boolean as a string", 'compress = "yes"\n', /key `compress`: expected true or false, got a string "yes"/],
    ["a table", "[port]\nvalue = 1\n", /key `port`: expected a string or a number.*got a table/],
    ["TOML syntax", 'port = 1\nhost = "x\n', /line 2, column \d+: /],
  ];
  it.each(cases)("%s", async (_, text, problem) => {
    const path = file("bad.toml", text);
    const r = await run(["serve", "--source", "sim", "--port", "0", "--config", path]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(new RegExp(`^taskwire: config ${path.replaceAll(".", "\\.")}: `));
    expect(r.err).toMatch(problem);
  });

  it("a byte setting takes a TOML integer or a string with a unit, not a float, which is refused saying so", async () => {
    const conf = async (toml: string) => {
      const r = await run(["serve", "--source", "sim", "--print-config", "--config", file("bytes.toml", toml)]);
      return { code: r.code, out: r.out, err: r.err };
    };
    // 1.0 was 1 byte while "1.0" was refused: both are refused now.
    expect(await conf("send-buffer = 1.0\n")).toMatchObject({
      code: 2,
      err: expect.stringMatching(
        /key `send-buffer`: expected an integer or a string with a unit \("8MiB"\), got the float 1\.0: write 1, without/,
      ),
    });
    expect((await conf('send-buffer = "1.0"\n')).err).toMatch(/key `send-buffer`: .*expected a whole number of bytes/);
    expect((await conf("max-message-bytes = 1.5\n")).err).toMatch(
      /got the float 1\.5: a byte count is whole; a fraction takes a unit, as a string \("1\.5MiB"\)/,
    );
    expect((await conf("max-header-bytes = 16384.0\n")).err).toMatch(/got the float 16384\.0: write 16384,/);
    // A share's float meant a part of the budget.
    expect((await conf("memory-budget-per-principal = 0.25\n")).err).toMatch(
      /key `memory-budget-per-principal`: .*got the float 0\.25: for 25% of the budget write "25%"/,
    );
    expect((await conf("nats-max-bytes = 1e3\n")).err).toMatch(/key `nats-max-bytes`: .*got the float 1000\.0/);
    // Integers and strings with units stay as they were; a float where a fraction means something too.
    const good = await conf(
      'send-buffer = 262144\nmax-message-bytes = "64KiB"\nmemory-budget = 1073741824\nsim-exit-rate = 20.5\n',
    );
    expect(good.code, good.err).toBe(0);
    expect(good.out).toMatch(/^send-buffer = 262144 {3}# config$/m);
    expect(good.out).toMatch(/^max-message-bytes = 65536 {3}# config$/m);
    expect(good.out).toMatch(/^memory-budget = 1073741824 {3}# config$/m);
    expect(good.out).toMatch(/^sim-exit-rate = 20\.5 {3}# config$/m);
    // A whole-number setting refuses a float as it refuses the string of it; one that takes fractions reads it.
    expect((await conf("port = 7878.0\n")).err).toMatch(/key `port`: expected a whole number .*\(got "7878\.0"\)/);
    expect((await conf('port = "7878.0"\n')).err).toMatch(/key `port`: expected a whole number .*\(got "7878\.0"\)/);
    expect((await conf("sim-exit-rate = 20.0\n")).out).toMatch(/^sim-exit-rate = 20 {3}# config$/m);
    // An integer past 2^53 is read whole (as a BigInt) and refused by the flag's range, not rounded.
    expect((await conf("port = 99999999999999999999\n")).err).toMatch(/got "99999999999999999999"/);
  });

  it("a missing file, and bad env values", async () => {
    const missing = await run(["serve", "--config", join(dir, "none.toml")]);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/config .*none\.toml: cannot read it: ENOENT/);
    const port = await run(["serve", "--source", "sim"], { TASKWIRE_PORT: "abc" });
    expect(port.code).toBe(2);
    expect(port.err).toMatch(/environment variable TASKWIRE_PORT: expected a whole number/);
    const flag = await run(["serve", "--source", "sim"], { TASKWIRE_COMPRESS: "maybe" });
    expect(flag.code).toBe(2);
    expect(flag.err).toMatch(/environment variable TASKWIRE_COMPRESS: expected true or false/);
  });
});

describe("review hardening: what the configuration says back", () => {
  it("client commands warn once of a TASKWIRE_ variable no command reads, naming the nearest real one", async () => {
    const env = {
      TASKWIRE_TOKN: "hunter2-secret-value", // a typo of TASKWIRE_TOKEN
      // Read by serve or expected around it (a shell that runs both): no warning.
      TASKWIRE_PORT: "7000",
      TASKWIRE_OPTS: "--port 1",
      TASKWIRE_URL: "http://127.0.0.1:1",
      TASKWIRE_REQUIRE_NETLINK: "1",
    };
    const commands = [["info"], ["get", "pid", "1"], ["cgroup", "/x"], ["watch", "--cpus", "0"], ["top"], [
      "run",
      "--",
      "true",
    ]];
    for (const args of commands) {
      const r = await run(args, env);
      expect(r.code, r.err).toBe(1); // nothing listens at TASKWIRE_URL
      const warnings = r.err.split("\n").filter((l) => l.includes("warning"));
      expect(warnings).toEqual([
        `taskwire: warning: environment variable TASKWIRE_TOKN is no setting of taskwire ${
          args[0]
        } and is ignored (did you mean TASKWIRE_TOKEN?); \`taskwire ${args[0]} --help\` lists each flag's variable`,
      ]);
      expect(r.err).not.toContain("hunter2");
    }
    // The nearest may be serve's: it is named as such.
    const serves = await run(["info"], { TASKWIRE_URL: "http://127.0.0.1:1", TASKWIRE_MAX_STREAM: "5" });
    expect(serves.err).toMatch(
      /^taskwire: warning: environment variable TASKWIRE_MAX_STREAM is no setting of taskwire info and is ignored \(did you mean TASKWIRE_MAX_STREAMS, a setting of taskwire serve\?\)/m,
    );
    expect((await run(["info"], { TASKWIRE_URL: "http://127.0.0.1:1" })).err).not.toMatch(/warning/);
  }, 60_000);

  it("warns of TASKWIRE_ variables that are no setting, naming the nearest, never echoing the value", async () => {
    const env = {
      TASKWIRE_MAX_STREAM: "5", // a typo of TASKWIRE_MAX_STREAMS
      TASKWIRE_ZZZ_SECRET: "hunter2-secret-value",
      // Expected around a server, so no warning: the unit's flag list, the client's, the test switches.
      TASKWIRE_OPTS: "--port 1",
      TASKWIRE_URL: "http://127.0.0.1:1",
      TASKWIRE_TOKEN: "tw_x",
      TASKWIRE_REQUIRE_NETLINK: "1",
    };
    const r = await run(["serve", "--source", "sim", "--print-config"], env);
    expect(r.code, r.err).toBe(0);
    const warnings = r.err.trim().split("\n");
    expect(warnings).toEqual([
      expect.stringMatching(
        /^taskwire: warning: environment variable TASKWIRE_MAX_STREAM is no setting of taskwire serve and is ignored \(did you mean TASKWIRE_MAX_STREAMS\?\)/,
      ),
      expect.stringMatching(/^taskwire: warning: environment variable TASKWIRE_ZZZ_SECRET is no setting.*ignored;/),
    ]);
    expect(r.err).not.toContain("hunter2");
    // A real start logs the same warning through the logger, before it serves.
    const child = spawn(process.execPath, [bin, "serve", "--source", "sim", "--port", "0"], {
      env: { ...clean, ...env },
    });
    let err = "";
    try {
      await new Promise<void>((resolve, reject) => {
        child.stderr.on("data", (d: Buffer) => (err += d.toString()) && /serving sim/.test(err) && resolve());
        child.once("exit", (code) => reject(new Error(`serve exited ${code}: ${err}`)));
      });
    } finally {
      child.kill("SIGTERM");
    }
    expect(err.indexOf("warning: environment variable TASKWIRE_MAX_STREAM is no setting")).toBeGreaterThan(-1);
    expect(err).not.toContain("hunter2");
  }, 30_000);

  it(
    "--print-config refuses what a start would refuse: exposure without auth, --allowed-host '*', half a TLS pair",
    async () => {
      const exposed = await run(["serve", "--source", "sim", "--host", "0.0.0.0", "--print-config"]);
      expect(exposed.code).toBe(2);
      expect(exposed.out).toBe("");
      expect(exposed.err).toMatch(/--host 0\.0\.0\.0 exposes the kernel's per-task accounting.*--token-file/);
      const star = await run(["serve", "--source", "sim", "--print-config"], { TASKWIRE_ALLOWED_HOST: "*" });
      expect(star.code).toBe(2);
      expect(star.err).toMatch(
        /--allowed-host "\*" \(from TASKWIRE_ALLOWED_HOST\): names are matched exactly.*switch off the DNS-rebinding guard/,
      );
      const starFlag = await run(["serve", "--source", "sim", "--allowed-host", "ok.example,*", "--print-config"]);
      expect(starFlag.code).toBe(2);
      const half = await run(["serve", "--source", "sim", "--tls-cert", "/nonexistent.pem", "--print-config"]);
      expect(half.code).toBe(2);
      expect(half.err).toMatch(/--tls-cert is set without --tls-key: pass both PEM files/);
      const halfEnv = await run(["serve", "--source", "sim", "--print-config"], { TASKWIRE_TLS_KEY: "/k.pem" });
      expect(halfEnv.code).toBe(2);
      expect(halfEnv.err).toMatch(/--tls-key \(from TASKWIRE_TLS_KEY\) is set without --tls-cert/);
      // Two settings checked against each other are each named where they were set.
      const buffers = await run(["serve", "--source", "sim", "--max-buffer", "100", "--print-config"], {
        TASKWIRE_DEFAULT_BUFFER: "200",
      });
      expect(buffers.code).toBe(2);
      expect(buffers.err).toMatch(/--default-buffer 200 \(from TASKWIRE_DEFAULT_BUFFER\) exceeds --max-buffer 100:/);
      const allowed = await run([
        "serve",
        "--source",
        "sim",
        "--host",
        "0.0.0.0",
        "--allow-unauthenticated",
        "--print-config",
      ]);
      expect(allowed.code, allowed.err).toBe(0);
      expect(allowed.out).toMatch(/^host = "0\.0\.0\.0" {3}# flag$/m);
      expect(allowed.err).toMatch(/warning: serving 0\.0\.0\.0 WITHOUT authentication.*must name this machine in Host/);
    },
    30_000,
  );

  it("--print-config reads every file a start reads and makes each check it makes, warnings first", async () => {
    const junk = file("junk.pem", "x\n");
    const printed = (env: Record<string, string>, ...args: string[]) =>
      run(["serve", "--source", "sim", ...args, "--print-config"], env);
    const cases: [Record<string, string>, string[], RegExp][] = [
      [
        { TASKWIRE_TLS_CERT: junk, TASKWIRE_TLS_KEY: junk },
        [],
        /--tls-cert \(from TASKWIRE_TLS_CERT\): .* is not a PEM/,
      ],
      [{ TASKWIRE_TOKEN_FILE: junk }, [], /--token-file \(from TASKWIRE_TOKEN_FILE\): the auth file .* is not JSON/],
      [{ TASKWIRE_ENABLE_DELAYACCT: "true" }, [], /--enable-delayacct \(from TASKWIRE_ENABLE_DELAYACCT\) changes/],
      // A --nats-* setting without --nats would do nothing: refused, as watch and top refuse theirs.
      [{ TASKWIRE_NATS_CREDS: "/nonexistent" }, [], /--nats-creds \(from TASKWIRE_NATS_CREDS\) is set without --nats/],
      // NATS settings are checked before anything connects: the caller's mistakes, exit 2, not "cannot connect".
      [{}, ["--nats", "nats://127.0.0.1:1", "--nats-creds", "/nonexistent"], /^taskwire: --nats-creds: cannot read/m],
      [
        {},
        ["--nats", "nats://127.0.0.1:1", "--nats-token-file", file("empty", "\n")],
        /--nats-token-file: .* is empty/,
      ],
      [{}, ["--nats", "nats://127.0.0.1:1", "--nats-ca", junk], /--nats-ca: .* is not a PEM certificate/],
      [
        { TASKWIRE_NATS: "nats://127.0.0.1:1", TASKWIRE_NATS_STREAM: "bad name" },
        [],
        /--nats-stream "bad name" \(from TASKWIRE_NATS_STREAM\): use/,
      ],
      [
        {},
        ["--memory-budget-per-principal", "25"],
        /gives a principal 25 bytes .* \(a bare number is bytes; for a percentage write 25%\)/,
      ],
      [
        {},
        ["--nats", "foo bar"],
        /--nats "foo bar" is not a URL \(check its host and port\); write e\.g\. nats:\/\/127\.0\.0\.1:4222/,
      ],
      [{}, ["--nats", "ws://127.0.0.1:1"], /--nats "ws:\/\/127\.0\.0\.1:1" has the scheme ws, not nats or tls/],
      // A / in a password: refused, the password never shown.
      [
        {},
        ["--nats", "nats://me:pa/ss@127.0.0.1:1"],
        /--nats "nats:\/\/\*\*\*@127\.0\.0\.1:1" is not a URL \(check its host and port; a \/ , @ or # in a password/,
      ],
      [{}, ["--nats", "nats://127.0.0.1:1", "--nats-creds", junk], /--nats-creds: .* is not a NATS credentials file/],
      [{}, ["--nats", "nats://127.0.0.1:1", "--nats-nkey", junk], /--nats-nkey: .* holds no nkey user seed/],
      [
        { TASKWIRE_NATS: " ", TASKWIRE_NATS_STREAM: "X" },
        [],
        /--nats-stream \(from TASKWIRE_NATS_STREAM\) is set without --nats/,
      ],
      [{}, ["--token-file="], /--token-file is empty: name the auth file/],
      // A setting of one source given to the other would do nothing: refused by name, wherever it was set.
      [
        { TASKWIRE_SOCKET_BUFFER: "8MiB" },
        [],
        /--socket-buffer \(from TASKWIRE_SOCKET_BUFFER\) applies to the real kernel only, which --source sim does not read/,
      ],
      [{}, ["--netlink-batch-window-ms", "5"], /--netlink-batch-window-ms applies to the real kernel only/],
      [{}, ["--cgroup-timeout", "50"], /--cgroup-timeout applies to the real kernel only/],
      [
        {},
        ["--source", "netlink", "--sim-cpus", "4"],
        /--sim-cpus shapes the simulated kernel, which --source netlink does not run: pass --source sim, or unset it/,
      ],
      [{ TASKWIRE_SIM_SEED: "7" }, ["--source", "auto"], /--sim-seed \(from TASKWIRE_SIM_SEED\) shapes the simulated/],
      // An origin that can never match a browser's Origin header: its web app would be refused without a word.
      [
        {},
        ["--cors-origin", "ops.example"],
        /--cors-origin "ops\.example" can never match .*; write https:\/\/ops\.example$/m,
      ],
      [{}, ["--cors-origin", "https://ops.example/"], /--cors-origin "https:\/\/ops\.example\/" can never match/],
      [{}, ["--cors-origin", "HTTPS://Ops.Example:443"], /can never match .*; write https:\/\/ops\.example$/m],
      [{}, ["--cors-origin", "https://*.example"], /has a wildcard: origins are matched exactly/],
      [{}, ["--cors-origin", "null"], /is what sandboxed frames and files send/],
      // A comma in a password splits the list: no part of it is shown.
      [{}, ["--nats", "nats://me:se,cret@127.0.0.1:1"], /--nats "nats:\/\/\*\*\*" is not a URL/],
    ];
    for (const [env, args, message] of cases) {
      const r = await printed(env, ...args);
      expect({ env, args, code: r.code, out: r.out, err: r.err }).toMatchObject({
        code: 2,
        out: "",
        err: expect.stringMatching(message),
      });
      expect(r.err).not.toMatch(/cannot connect/);
    }
    // A password is never printed, whatever it holds; the output says it left it out.
    for (const password of ["pa'ss", 'pa"ss', "pa@ss"]) {
      const r = await printed({}, "--nats", `nats://me:${password}@127.0.0.1:1`);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/^nats = "nats:\/\/\*\*\*@127\.0\.0\.1:1" {3}# flag$/m);
      expect(r.out + r.err).not.toContain("ss@");
      expect(r.err).toMatch(/user:password is printed as \*\*\*/);
    }
    // A value the TOML reader cannot take back is not shown at all, nor the reader's error.
    const odd = await printed({}, "--nats", "nats://me:secret@127.0.0.1:1?a   # b");
    expect(odd.code, odd.err).toBe(0);
    expect(odd.out + odd.err).not.toContain("secret");
    const userinfo = await printed({}, "--cors-origin", "https://me:secret@ops.example");
    expect([userinfo.code, userinfo.err]).toEqual([2, expect.stringMatching(/holds a user or password/)]);
    expect(userinfo.err).not.toContain("secret");
    // A path with an @ is no URL: printed as it is.
    const path = await printed({}, "--allowed-host", "a@b");
    expect(path.out).not.toContain("***");
    // The start refuses them the same way.
    const started = await run([
      "serve",
      "--source",
      "sim",
      "--port",
      "0",
      "--nats",
      "nats://127.0.0.1:1",
      "--nats-creds",
      "/nonexistent",
    ]);
    expect([started.code, started.err]).toEqual([2, expect.stringMatching(/^taskwire: --nats-creds: cannot read/m)]);
    // An unknown variable is warned of before the check that fails (it may be why).
    const typo = await printed({ TASKWIRE_MAX_BUFER: "100", TASKWIRE_DEFAULT_BUFFER: "2000000" });
    expect(typo.code).toBe(2);
    expect(typo.err).toMatch(
      /TASKWIRE_MAX_BUFER is no setting.*did you mean TASKWIRE_MAX_BUFFER\?[^]*--default-buffer/,
    );
  }, 60_000);

  it(
    "says what was likely meant: near keys and variables, --no-* settings, sections, a host written as a URL",
    async () => {
      const key = async (toml: string) =>
        (await run(["serve", "--source", "sim", "--print-config", "--config", file("k.toml", toml)])).err;
      expect(await key("max_buffer = 80\n")).toMatch(/key `max_buffer`: not a setting \(did you mean `max-buffer`\?\)/);
      expect(await key("maxBuffer = 80\n")).toMatch(/did you mean `max-buffer`\?/);
      expect(await key("prot = 80\n")).toMatch(/did you mean `port`\?/);
      expect(await key("no-metrics = true\n")).toMatch(/did you mean `metrics = false`\?/);
      expect(await key("no-metrics = false\n")).toMatch(/did you mean `metrics = true`\?/);
      expect(await key("nats-tls-ca = 1\n")).toMatch(/did you mean `nats-ca`\?/);
      expect(await key("sim = true\n")).not.toMatch(/did you mean/);
      expect(await key("config = 1\n")).toMatch(/--config is given on the command line/);
      expect(await key("[serve]\nport = 1\n")).toMatch(/key `serve`: settings are top-level keys \(no \[sections\]\)/);
      expect(await key('token-file = ""\n')).toMatch(/key `token-file`: is empty: give a value, or leave the key out/);
      const variable = async (name: string) =>
        (await run(["serve", "--source", "sim", "--print-config"], { [name]: "1" })).err;
      expect(await variable("TASKWIRE_TLS_KEYFILE")).toMatch(/did you mean TASKWIRE_TLS_KEY\?/);
      expect(await variable("TASKWIRE_NATS_URL")).toMatch(/did you mean TASKWIRE_NATS\?/);
      expect(await variable("TASKWIRE_TLS_CA")).toMatch(/did you mean TASKWIRE_TLS_CLIENT_CA\?/);
      expect(await variable("TASKWIRE_NO_METRICS")).toMatch(/did you mean TASKWIRE_METRICS=false\?/);
      expect(await variable("TASKWIRE_NATS_PASSWORD")).not.toMatch(/did you mean/);
      expect(await variable("TASKWIRE_CONFIG_FILE")).toMatch(/did you mean TASKWIRE_CONFIG\?/);
      // A variable a flag overrides does nothing: said at the start and in --print-config.
      const overridden = await run(["serve", "--source", "sim", "--port", "18541", "--print-config"], {
        TASKWIRE_PORT: "18540",
      });
      expect(overridden.err).toMatch(
        /warning: environment variable TASKWIRE_PORT is set, and --port on the command line/,
      );
      expect(overridden.out).toMatch(/^port = 18541 {3}# flag \(TASKWIRE_PORT is set too, and overridden\)$/m);
      for (
        const [host, message] of [
          ["[::1]", /--host "\[::1\]" \(from TASKWIRE_HOST\): give the address without brackets \(::1;/],
          ["http://127.0.0.1", /"http:\/\/127\.0\.0\.1" \(from TASKWIRE_HOST\) is a URL: give the address alone/],
          ["127.0.0.1:7000", /holds a port: give --host 127\.0\.0\.1 --port 7000/],
        ] as const
      ) {
        const r = await run(["serve", "--source", "sim", "--print-config"], { TASKWIRE_HOST: host });
        expect([r.code, r.err]).toEqual([2, expect.stringMatching(message)]);
      }
    },
    60_000,
  );

  it("with --log-format json, the error a start fails with is a JSON record too (fatal), not a line of text", async () => {
    const r = await run(["serve", "--source", "sim", "--port", "0"], {
      TASKWIRE_LOG_FORMAT: "json",
      TASKWIRE_HOST: "[::1]",
    });
    expect(r.code).toBe(2);
    const last = JSON.parse(r.err.trim().split("\n").pop()!);
    expect(last).toMatchObject({ level: "FATAL", logger: "taskwire" });
    expect(last.message).toMatch(/^--host "\[::1\]" \(from TASKWIRE_HOST\): give the address without brackets/);
  });

  it(
    "under --log-format json a command-line usage error is a JSON record too, wherever json was asked for",
    async () => {
      const serve = (args: string[], env: Record<string, string> = {}) =>
        run(["serve", "--source", "sim", "--port", "0", ...args], env);
      // Its one line, parsed: a record like a bad variable's (below), and nothing else on stderr (no help hint).
      const record = (r: { code: number; err: string }) => {
        expect(r.code).toBe(2);
        expect(r.err.trim().split("\n"), r.err).toHaveLength(1);
        return JSON.parse(r.err) as Record<string, unknown>;
      };
      const variable = record(await serve([], { TASKWIRE_LOG_FORMAT: "json", TASKWIRE_NATS_WINDOW: "abc" }));
      const flag = record(await serve(["--log-format", "json", "--nats-window", "abc"]));
      expect(Object.keys(flag).sort()).toEqual(Object.keys(variable).sort());
      expect(flag).toMatchObject({ level: "FATAL", logger: "taskwire" });
      expect(flag["message"]).toBe(
        "option '--nats-window <n>' argument 'abc' is invalid. expected a whole number from 1 to 65536",
      );
      const conf = file("json.toml", 'log-format = "json"\n');
      for (
        const [args, env, message] of [
          // --log-format after the bad flag: commander never read it, the server would have logged JSON all the same.
          [["--nats-window", "abc", "--log-format", "json"], {}, /^option '--nats-window <n>' argument 'abc'/],
          [["--log-format=json", "--bogus"], {}, /^unknown option '--bogus'$/],
          [["--log-format", "json", "--source", "nope"], {}, /^option '--source <source>' argument 'nope' is invalid/],
          [["--log-format", "json", "--port"], {}, /^option '--port <port>' argument missing$/],
          [["--bogus"], { TASKWIRE_LOG_FORMAT: "json" }, /^unknown option '--bogus'$/],
          [["--config", conf, "--bogus"], {}, /^unknown option '--bogus'$/],
          [["--bogus"], { TASKWIRE_CONFIG: conf }, /^unknown option '--bogus'$/],
          // A config file TOML cannot parse: its own top-level log-format line still counts.
          [
            ["--config", file("broken.toml", 'log-format = "json"  # structured\nport = = 7\n')],
            {},
            /^config .*broken\.toml: line 2, column 8: invalid value$/,
          ],
          // A bad variable named before TASKWIRE_LOG_FORMAT is applied (the variables go in the options' order).
          [[], { TASKWIRE_LOG_FORMAT: "json", TASKWIRE_SIM_CPUS: "abc" }, /^environment variable TASKWIRE_SIM_CPUS: /],
        ] as [string[], Record<string, string>, RegExp][]
      ) {
        const r = await serve(args, env);
        expect({ args, env, message: record(r)["message"] }).toMatchObject({ message: expect.stringMatching(message) });
      }
      // Text otherwise: no json anywhere, a flag's text over the variable's json, the variable's over the file's,
      // --print-config (read by a person).
      for (
        const [args, env] of [
          [["--nats-window", "abc"], {}],
          [["--log-format", "text", "--bogus"], { TASKWIRE_LOG_FORMAT: "json" }],
          [["--bogus"], { TASKWIRE_LOG_FORMAT: "text", TASKWIRE_CONFIG: conf }],
          [["--log-format", "json", "--print-config", "--bogus"], {}],
        ] as [string[], Record<string, string>][]
      ) {
        const r = await serve(args, env);
        expect([r.code, r.err], JSON.stringify({ args, env })).toEqual([
          2,
          expect.stringMatching(/^taskwire: [^{].*\n\(run with --help for usage\)\n$/),
        ]);
      }
      // A client command has no log format: text.
      const client = await run(["watch", "--bogus"], { TASKWIRE_LOG_FORMAT: "json" });
      expect([client.code, client.err]).toEqual([
        2,
        "taskwire: unknown option '--bogus'\n(run with --help for usage)\n",
      ]);
    },
    60_000,
  );

  it("a bad value is quoted once", async () => {
    const env = await run(["serve", "--source", "sim"], { TASKWIRE_MEMORY_BUDGET: "-5" });
    expect(env.code).toBe(2);
    expect(env.err.match(/got "-5"/g)).toHaveLength(1);
    const conf = await run(["serve", "--source", "sim", "--config", file("budget.toml", 'memory-budget = "-5"\n')]);
    expect(conf.code).toBe(2);
    expect(conf.err.match(/got "-5"/g)).toHaveLength(1);
    // A parser that does not name the value still gets it named, once.
    const port = await run(["serve", "--source", "sim"], { TASKWIRE_PORT: "abc" });
    expect(port.err.match(/got "abc"/g)).toHaveLength(1);
  });

  it("a relative file path in a config file names a file beside it; in a flag, one in the working directory", async () => {
    const sub = join(dir, "relative");
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, "auth.json"), "not json\n");
    const conf = join(sub, "taskwire.toml");
    writeFileSync(conf, 'token-file = "auth.json"\n');
    // Run from the repository: the file is still found beside the config, not in the working directory.
    const fromFile = await run(["serve", "--source", "sim", "--config", conf, "--print-config"]);
    expect(fromFile.code).toBe(2);
    expect(fromFile.err).toContain(`the auth file ${join(sub, "auth.json")} is not JSON`);
    // A blank path is not made one beside the file: it is empty, as the flag's is.
    writeFileSync(conf, 'token-file = "  "\n');
    const blank = await run(["serve", "--source", "sim", "--config", conf, "--print-config"]);
    expect(blank.err).toMatch(/--token-file \(from config .*, key `token-file`\) is empty: name the auth file/);
    const fromFlag = await run(["serve", "--source", "sim", "--token-file", "auth.json", "--print-config"]);
    expect(fromFlag.err).toMatch(/--token-file: .*auth\.json.*(no such file|ENOENT)/i); // the repository has none
    // A config with no directory of its own (a pipe: --config <(...)) names the working directory's file.
    const piped = spawnSync(
      "bash",
      [
        "-c",
        `"$0" "$1" serve --source sim --config <(printf 'token-file = "auth.json"\\n') --print-config`,
        process.execPath,
        bin,
      ],
      { cwd: sub, env: clean, encoding: "utf8" },
    );
    expect(piped.stderr).toContain(`the auth file ${join(sub, "auth.json")} is not JSON`);
  });

  it("a path starting with ~ is refused wherever no shell expanded it, naming the path to write", async () => {
    const home = { HOME: "/home/tester" };
    const conf = (toml: string) => file("tilde.toml", toml);
    const serve = (args: string[], env: Record<string, string> = {}) =>
      run(["serve", "--source", "sim", ...args, "--print-config"], { ...home, ...env });
    // A config file: beside it, ~/t named a file in a directory called ~.
    const inFile = await serve(["--config", conf('token-file = "~/tokens.json"\n')]);
    expect([inFile.code, inFile.err]).toEqual([
      2,
      expect.stringMatching(
        /^taskwire: config .*tilde\.toml: key `token-file`: ~ is not expanded in a config file: write the path in full, e\.g\. \/home\/tester\/tokens\.json$/m,
      ),
    ]);
    expect((await serve(["--config", conf('tls-cert = "~"\ntls-key = "/k"\n')])).err).toMatch(
      /key `tls-cert`: ~ is not expanded in a config file: write the path in full, e\.g\. \/home\/tester$/m,
    );
    // ~user: that user's home (root's is in every password file); one with no entry has no home to suggest.
    expect((await serve(["--config", conf('nats-creds = "~root/n.creds"\n')])).err).toMatch(
      /e\.g\. \/root\/n\.creds$/m,
    );
    const unknown = await serve(["--config", conf('nats-ca = "~no-such-user-x/ca.pem"\n')]);
    expect([unknown.code, unknown.err]).toEqual([
      2,
      expect.stringMatching(
        /^taskwire: config .*tilde\.toml: key `nats-ca`: ~ is not expanded in a config file, and ~no-such-user-x names no user in \/etc\/passwd: write the path in full \(an absolute path, e\.g\. in an existing user's home directory\)$/m,
      ),
    ]);
    expect(unknown.err).not.toContain("/home/no-such-user-x");
    // A name no user can have is not looked up, and is shown cut and escaped.
    const odd = tildeProblem(`~${"x".repeat(300)}\u001b[2J/ca.pem`, "a config file");
    expect(odd).toMatch(/and ~x{64}\.\.\. names no user/);
    expect(tildeProblem("~no\u001bone/ca.pem", "a config file")).toContain("~no\\u001bone names no user");
    // Environment variables: serve's, and --config's own.
    expect((await serve([], { TASKWIRE_TLS_CLIENT_CA: "~/ca.pem" })).err).toMatch(
      /^taskwire: environment variable TASKWIRE_TLS_CLIENT_CA: ~ is not expanded in an environment variable: write the path in full, e\.g\. \/home\/tester\/ca\.pem$/m,
    );
    expect((await serve([], { TASKWIRE_CONFIG: "~/taskwire.toml" })).err).toMatch(
      /^taskwire: environment variable TASKWIRE_CONFIG: ~ is not expanded in an environment variable/m,
    );
    // The command line: the shell expands an unquoted ~/t, so one that arrives was quoted, or after --flag=.
    for (const args of [["--token-file", "~/t"], ["--token-file=~/t"]]) {
      const r = await serve(args);
      expect([r.code, r.err]).toEqual([
        2,
        expect.stringMatching(
          /^taskwire: --token-file "~\/t": ~ is not expanded in this argument \(.*not in quotes, after --token-file=.*\): write the path in full, e\.g\. \/home\/tester\/t$/m,
        ),
      ]);
    }
    // The client commands' paths too, before anything connects.
    const client = await run(["info", "--url", "http://127.0.0.1:1", "--ca", "~/ca.pem"], home);
    expect([client.code, client.err]).toEqual([2, expect.stringMatching(/^taskwire: --ca "~\/ca\.pem": ~ is not/m)]);
    const clientEnv = await run(["info", "--url", "http://127.0.0.1:1"], { ...home, TASKWIRE_CERT: "~/c.pem" });
    expect(clientEnv.err).toMatch(/^taskwire: environment variable TASKWIRE_CERT: ~ is not expanded/m);
    // A ~ inside a path is an ordinary character: still beside the config file.
    const inside = await serve(["--config", conf('token-file = "a~/t"\n')]);
    expect(inside.err).toContain(`${join(dir, "a~", "t")}`);
    expect(inside.err).not.toMatch(/is not expanded/);
  });

  it("a setting refused for the source names where the source came from, after its value", async () => {
    const r = await run(["serve", "--print-config"], { TASKWIRE_SOURCE: "netlink", TASKWIRE_SIM_CPUS: "4" });
    expect(r.code).toBe(2);
    expect(r.err).toContain(
      "--sim-cpus (from TASKWIRE_SIM_CPUS) shapes the simulated kernel, which --source netlink (from TASKWIRE_SOURCE) " +
        "does not run",
    );
  });

  it("--print-config writes a flag's relative file path absolute: it loads back the same from anywhere", () => {
    const sub = join(dir, "printed-paths");
    mkdirSync(sub, { recursive: true });
    const entry = spawnSync(process.execPath, [bin, "token", "--principal", "ops"], { env: clean, encoding: "utf8" });
    writeFileSync(join(sub, "auth.json"), entry.stdout);
    const serve = (cwd: string, ...args: string[]) =>
      spawnSync(process.execPath, [bin, "serve", "--source", "sim", ...args, "--print-config"], {
        cwd,
        env: clean,
        encoding: "utf8",
      });
    const printed = serve(sub, "--token-file", "auth.json", "--send-buffer", "0KiB");
    expect(printed.stdout).toMatch(new RegExp(`^token-file = "${join(sub, "auth.json")}"`, "m"));
    expect(printed.stdout).toMatch(/^send-buffer = 0\b/m); // 0 with a unit: the kernel's autotuning, as 0 is
    // Loaded from elsewhere (the config in another directory, run from /), it names the same file.
    const conf = join(dir, "printed-paths.toml");
    writeFileSync(conf, printed.stdout);
    const again = serve("/", "--config", conf);
    expect(again.status).toBe(0);
    expect(again.stdout).toMatch(new RegExp(`^token-file = "${join(sub, "auth.json")}"`, "m"));
  });

  it("a token file that is not JSON is refused without echoing any of its content", async () => {
    const secret = "tw_Qx7Zk9Vb2Lm4Np8Rt6Ws3Yh";
    for (const text of [secret, `{"tokens": ${secret}}`, `{\n"principals": {},\n"x": "${secret}",\n}`]) {
      const path = file("tokens.json", text);
      const r = await run(["serve", "--source", "sim", "--port", "0", "--token-file", path]);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(
        /--token-file: the auth file .*tokens\.json is not JSON \(a syntax error.*\); check it with `jq/,
      );
      for (let i = 0; i + 5 <= secret.length; i++) expect(r.err).not.toContain(secret.slice(i, i + 5));
    }
  });
});
