/**
 * Authentication and exposure from the command line: `taskwire token`
 * makes a working token, `serve --token-file` enforces it and reloads on
 * SIGHUP, client commands authenticate with --token / TASKWIRE_TOKEN, and
 * serve refuses configurations that would expose the kernel's data to anyone.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, loopbackCertificate, spawnServer } from "./helpers.ts";

const root = new URL("..", import.meta.url).pathname;
const bin = `${root}bin/taskwire.js`;
const dir = mkdtempSync(join(tmpdir(), "taskwire-cli-auth-"));

async function run(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)("node", [bin, ...args], {
      cwd: root,
      env: { ...process.env, TASKWIRE_TOKEN: "", ...env },
      timeout: 30_000,
    });
    return { code: 0, out: stdout, err: stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

/** `taskwire token`'s token and the auth file entry it prints. */
async function makeToken(
  principal: string,
  roles = "read,subscribe",
): Promise<{ token: string; entry: { principals: object; tokens: object } }> {
  const r = await run(["token", "--principal", principal, "--roles", roles]);
  expect(r.code).toBe(0);
  // The token on stderr only; stdout is the entry alone, usable as an auth file as it is.
  const token = /token \(.*\): (\S+)/.exec(r.err)![1]!;
  expect(r.out).not.toContain(token);
  return { token, entry: JSON.parse(r.out) };
}

let server: Awaited<ReturnType<typeof spawnServer>> | undefined;
let stderr = "";
const authFile = join(dir, "auth.json");
let ops: { token: string; entry: { principals: object; tokens: object } };

beforeAll(async () => {
  if (!existsSync(`${root}dist/src/cli/main.js`)) {
    throw new Error("dist/ is missing: run `npm run build` (npm test does it first)");
  }
  ops = await makeToken("ops");
  writeFileSync(authFile, JSON.stringify(ops.entry));
  server = await spawnServer("node", [bin, "serve", "--source", "sim", "--port", "0", "--token-file", authFile], root);
  server.child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
}, 60_000);
afterAll(() => server?.stop());

describe("a server with --token-file", () => {
  it("answers a client command with TASKWIRE_TOKEN or --token, and refuses one without", async () => {
    const viaEnv = await run(["info", "--json", "--url", server!.url], { TASKWIRE_TOKEN: ops.token });
    expect(viaEnv.code).toBe(0);
    expect(JSON.parse(viaEnv.out)).toMatchObject({ principal: "ops", roles: ["read", "subscribe"] });
    expect((await run(["info", "--url", server!.url, "--token", ops.token])).code).toBe(0);
    const none = await run(["info", "--url", server!.url]);
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/Unauthenticated: this server needs a bearer token/);
    await eventually(() => /audit: unauthenticated address=127\.0\.0\.1 method=GetInfo/.test(stderr));
  });

  it("says a client certificate given with an http:// URL was not presented, when refused for want of one", async () => {
    const { cert, key } = loopbackCertificate();
    writeFileSync(join(dir, "client.pem"), cert);
    writeFileSync(join(dir, "client.key"), key);
    const r = await run([
      "info",
      "--url",
      server!.url,
      "--cert",
      join(dir, "client.pem"),
      "--key",
      join(dir, "client.key"),
    ]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      /Unauthenticated: this server needs a bearer token.*; --cert, --key were not used: a client certificate is presented only over https:\/\/, and this URL is http:\/\//,
    );
  });

  it("takes a new token after SIGHUP, and keeps the old ones when the new file is bad", async () => {
    const fresh = await makeToken("team", "read");
    expect((await run(["info", "--url", server!.url, "--token", fresh.token])).code).toBe(1);
    writeFileSync(authFile, "{ not json");
    process.kill(server!.child.pid!, "SIGHUP");
    await eventually(() => /SIGHUP: kept the previous tokens: .*is not JSON/.test(stderr));
    expect((await run(["info", "--url", server!.url, "--token", ops.token])).code).toBe(0);
    writeFileSync(
      authFile,
      JSON.stringify({
        principals: { ...ops.entry.principals, team: { roles: ["read"], uids: [1000, 33] } },
        tokens: { ...ops.entry.tokens, ...fresh.entry.tokens },
      }),
    );
    process.kill(server!.child.pid!, "SIGHUP");
    await eventually(() => /SIGHUP: reloaded/.test(stderr));
    const team = await run(["info", "--json", "--url", server!.url, "--token", fresh.token]);
    expect(JSON.parse(team.out)).toMatchObject({
      principal: "team",
      roles: ["read"],
      uid_limited: true,
      uids: [33, 1000],
    });
    // The text says the limit; a principal without one is not told of any.
    const text = await run(["info", "--url", server!.url, "--token", fresh.token]);
    expect(text.out).toMatch(/^you see\s+only the tasks of uids 33, 1000 \(other tasks are NOT_FOUND/m);
    expect((await run(["info", "--url", server!.url, "--token", ops.token])).out).not.toMatch(/^you see/m);
    const denied = await run(["watch", "--cpus", "0", "--count", "1", "--url", server!.url, "--token", fresh.token]);
    expect(denied.err).toMatch(/needs the "subscribe" role/);
  });
});

describe("serve refuses to expose the kernel's data without authentication", () => {
  it("on a non-loopback address, naming the flags that fix it", async () => {
    const r = await run(["serve", "--source", "sim", "--host", "0.0.0.0", "--port", "0"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--token-file FILE/);
    expect(r.err).toMatch(/--tls-client-ca FILE/);
    expect(r.err).toMatch(/--allow-unauthenticated/);
  });

  it("with --allow-unauthenticated, serves and warns", async () => {
    const child = spawn("node", [
      bin,
      "serve",
      "--source",
      "sim",
      "--host",
      "0.0.0.0",
      "--port",
      "0",
      "--allow-unauthenticated",
    ], { cwd: root });
    let err = "";
    try {
      await new Promise<void>((resolve, reject) => {
        child.stderr.on("data", (d: Buffer) => {
          err += d.toString();
          if (/WITHOUT authentication/.test(err) && /serving sim source/.test(err)) resolve();
        });
        child.once("exit", (code) => reject(new Error(`exited ${code}: ${err}`)));
      });
    } finally {
      child.kill("SIGTERM");
    }
    expect(err).toMatch(/warning: serving 0\.0\.0\.0 WITHOUT authentication \(--allow-unauthenticated\)/);
  }, 30_000);

  it("with --cors-origin '*'", async () => {
    const r = await run(["serve", "--source", "sim", "--port", "0", "--cors-origin", "*"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--cors-origin '\*' without authentication/);
  });

  it("with a bad auth file, naming the key and the problem", async () => {
    const bad = join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify({ principals: { x: { roles: ["superuser"] } } }));
    const r = await run(["serve", "--source", "sim", "--port", "0", "--token-file", bad]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/principals\.x\.roles must be a list of "read", "subscribe", "admin", "metrics"/);
  });

  it("--tls-client-ca without TLS", async () => {
    const r = await run(["serve", "--source", "sim", "--port", "0", "--tls-client-ca", authFile]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--tls-client-ca needs TLS/);
  });

  it("an auth file with no tokens starts (tokens may come with SIGHUP), and says nobody can authenticate yet", async () => {
    const empty = join(dir, "empty.json");
    writeFileSync(empty, JSON.stringify({ principals: {}, tokens: {} }));
    const s = await spawnServer("node", [bin, "serve", "--source", "sim", "--port", "0", "--token-file", empty], root);
    let err = "";
    s.child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    try {
      await eventually(() => /empty\.json holds no tokens: no caller can authenticate until one is added/.test(err));
    } finally {
      s.stop();
    }
  });
});

describe("taskwire token", () => {
  it("refuses a principal name the auth file would refuse, before making a token", async () => {
    for (const name of ["", "a b", 'say"hi', "bell\u0007", "x".repeat(129), "\u{1F600}".repeat(129)]) {
      const r = await run(["token", "--principal", name]);
      expect({ name, code: r.code }).toEqual({ name, code: 2 });
      expect(r.err).toMatch(/a principal's name needs 1-128 characters without spaces, quotes, control characters/);
      expect(r.err).not.toMatch(/token \(/);
    }
  });

  it("counts a name's characters, not its UTF-16 units", async () => {
    const r = await run(["token", "--principal", "\u{1F600}".repeat(128), "--roles", "read"]);
    expect(r.code).toBe(0);
  });

  it("refuses a flag taken as the name (--principal --roles read), before making a token", async () => {
    const r = await run(["token", "--principal", "--roles", "read"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/starts with "-" looks like a flag: give the name right after --principal/);
    expect(r.err).not.toMatch(/token \(/);
  });

  it.skipIf(!existsSync("/usr/bin/jq"))(
    "says how to merge a new entry into an auth file, and that command works",
    async () => {
      const first = await run(["token", "--principal", "first"]);
      const second = await run(["token", "--principal", "second", "--roles", "metrics"]);
      // the hint on stderr, as printed: jq -s '.[0] * .[1]' auth.json entry.json > merged.json
      const hint = /merge it into the file \(jq -s '([^']+)' auth\.json entry\.json > merged\.json\)/.exec(second.err);
      expect(hint, second.err).not.toBeNull();
      const [auth, entry] = [join(dir, "merge-auth.json"), join(dir, "merge-entry.json")];
      writeFileSync(auth, first.out);
      writeFileSync(entry, second.out);
      const { stdout } = await promisify(execFile)("/usr/bin/jq", ["-s", hint![1]!, auth, entry]);
      const merged = JSON.parse(stdout);
      expect(merged.principals).toEqual({ first: { roles: ["read", "subscribe"] }, second: { roles: ["metrics"] } });
      expect(Object.values(merged.tokens).sort()).toEqual(["first", "second"]);
      expect((await run(["token", "--help"])).out).toMatch(/"uids": \[1000\]/);
    },
  );

  it("an auth file written with its stderr too (> auth.json 2>&1) is refused saying so, without echoing the token", async () => {
    const path = join(dir, "with-stderr.json");
    await promisify(execFile)("sh", ["-c", `"${process.execPath}" "${bin}" token --principal ops > "${path}" 2>&1`]);
    const token = /: (tw_\S+)/.exec(readFileSync(path, "utf8"))![1]!;
    const r = await run(["serve", "--source", "sim", "--port", "0", "--token-file", path]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/is not JSON \(a syntax error.*\); it holds `taskwire token`'s stderr .* stdout alone/);
    expect(r.err).not.toContain(token.slice(3, 10));
  });

  it("an entry appended (>>) is named: its stderr too (the token mid-file), or a second document jq reads as fine", async () => {
    const token = (p: string, to: string) =>
      promisify(execFile)("sh", ["-c", `"${process.execPath}" "${bin}" token --principal ${p} ${to}`]);
    const [polluted, two] = [join(dir, "appended-stderr.json"), join(dir, "appended.json")];
    await token("ops", `> "${polluted}" 2>/dev/null`);
    await token("dev", `>> "${polluted}" 2>&1`);
    const secret = /: (tw_\S+)/.exec(readFileSync(polluted, "utf8"))![1]!;
    const r = await run(["serve", "--source", "sim", "--port", "0", "--token-file", polluted]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/is not JSON \(a syntax error.*\); it holds `taskwire token`'s stderr \(the token itself/);
    expect(r.err).not.toContain(secret.slice(3, 10));
    await token("ops", `> "${two}" 2>/dev/null`);
    await token("dev", `>> "${two}" 2>/dev/null`);
    const r2 = await run(["serve", "--source", "sim", "--port", "0", "--token-file", two]);
    expect(r2.code).toBe(2);
    const hint =
      /it holds 2 JSON documents one after another \(an entry appended with >>\?\): merge them into one, `jq -s '([^']+)' /
        .exec(r2.err);
    expect(hint, r2.err).not.toBeNull();
    const { stdout } = await promisify(execFile)("/usr/bin/jq", ["-s", hint![1]!, two]);
    expect(Object.keys(JSON.parse(stdout).principals)).toEqual(["ops", "dev"]);
  });

  it("writes a role given twice once", async () => {
    const r = await run(["token", "--principal", "twice", "--roles", "read,read,subscribe"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).principals.twice.roles).toEqual(["read", "subscribe"]);
  });

  it("says that admin alone grants no call", async () => {
    const alone = await run(["token", "--principal", "boss", "--roles", "admin"]);
    expect(alone.code).toBe(0);
    expect(alone.err).toMatch(/taskwire: note: admin widens read and subscribe .* grants no call by itself/);
    expect((await run(["token", "--principal", "boss", "--roles", "read,admin"])).err).not.toMatch(/note: admin/);
  });
});
