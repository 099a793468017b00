/**
 * The findings of an attack review of the production surfaces, each as an
 * attacker would try it: the raw machine id and the capability list shown
 * to every reader; a server on 0.0.0.0 without authentication answering any
 * Host (DNS rebinding); per-address quotas multiplied by calling from many
 * loopback addresses. Against a real server (and the built CLI for what
 * `serve` decides); traffic only to loopback.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { connect as http2Connect } from "node:http2";
import { hostname, networkInterfaces, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Code, createTaskwireClient } from "@taskwire/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAuthenticator } from "../src/auth/authenticator.ts";
import { createHostCheck, machineNames } from "../src/auth/hosts.ts";
import { hashToken, newToken } from "../src/auth/tokens.ts";
import { addressBucket } from "../src/core/admission.ts";
import { appSpecificId, TASKWIRE_APP_ID } from "../src/server/host-identity.ts";
import { createServer } from "../src/server/server.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { type Running, startServer } from "./helpers.ts";

const root = resolve(import.meta.dirname, "..");
const rawMachineId = (() => {
  try {
    return readFileSync("/etc/machine-id", "utf8").trim();
  } catch {
    return "";
  }
})();

describe("GetInfo shows no raw machine id, and capabilities only to admins", () => {
  let running: Running;
  const tokens = { reader: newToken(), admin: newToken() };
  beforeAll(async () => {
    const file = join(mkdtempSync(join(tmpdir(), "taskwire-review-")), "auth.json");
    writeFileSync(
      file,
      JSON.stringify({
        principals: { reader: { roles: ["read", "subscribe"] }, admin: { roles: ["read", "admin"] } },
        tokens: { [hashToken(tokens.reader)]: "reader", [hashToken(tokens.admin)]: "admin" },
      }),
    );
    running = await startServer(createSimSource({ cpus: 2, exitRate: 0 }), {}, {
      authenticator: createAuthenticator({ tokenFile: file }),
    });
  });
  afterAll(() => running?.close());
  const as = (token: string) => createTaskwireClient(running.url, { token });

  it.skipIf(rawMachineId === "")(
    `machine_id is taskwire's app-specific id, as systemd derives it${
      rawMachineId === "" ? " SKIPPED: no /etc/machine-id" : ""
    }`,
    async () => {
      const reader = (await as(tokens.reader).getInfo({})).host!;
      const admin = (await as(tokens.admin).getInfo({})).host!;
      expect(reader.machineId).toMatch(/^[0-9a-f]{32}$/);
      expect(reader.machineId).not.toBe(rawMachineId);
      expect(admin.machineId).toBe(reader.machineId); // one id for everyone: nobody needs the raw one
      expect(reader.machineId).toBe(appSpecificId(rawMachineId, TASKWIRE_APP_ID));
      // The raw id appears nowhere in the answer.
      const body = await fetch(`${running.url}/taskwire.v1.TaskStats/GetInfo`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${tokens.reader}` },
        body: "{}",
      });
      expect(await body.text()).not.toContain(rawMachineId);
    },
  );

  it("matches `systemd-id128 machine-id --app-specific` (sd_id128_get_machine_app_specific), where installed", () => {
    let expected: string;
    try {
      expected = execFileSync("systemd-id128", ["machine-id", `--app-specific=${TASKWIRE_APP_ID}`], {
        encoding: "utf8",
        stdio: "pipe",
      }).trim();
    } catch (err) {
      return void console.warn(`skipped: systemd-id128 cannot answer here (${(err as Error).message.split("\n")[0]})`);
    }
    expect(appSpecificId(rawMachineId, TASKWIRE_APP_ID)).toBe(expected);
    // The v4 shape: version nibble 4, RFC 4122 variant.
    expect(expected[12]).toBe("4");
    expect("89ab").toContain(expected[16]!);
    expect(appSpecificId("not an id", TASKWIRE_APP_ID)).toBe("");
  });

  it("capabilities go to admins only; a reader sees none", async () => {
    expect((await as(tokens.reader).getInfo({})).capabilities).toEqual([]);
    const admin = await as(tokens.admin).getInfo({});
    // This test runs as root: the process holds capabilities, and an admin is told which.
    expect(admin.capabilities.length).toBeGreaterThan(0);
  });
});

/** `taskwire serve` (the built CLI) with `args`; resolves with its port once it listens. */
async function serveCli(args: string[]): Promise<{ port: number; child: ChildProcess; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [resolve(root, "dist/src/cli/run.js"), "serve", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  const port = await new Promise<number>((ok, fail) => {
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      const m = / on https?:\/\/[^ ]*:(\d+) with /.exec(err);
      if (m) ok(Number(m[1]));
    });
    child.once("exit", (code) => fail(new Error(`serve exited ${code}: ${err}`)));
  });
  const exited = new Promise((r) => child.once("exit", r));
  return {
    port,
    child,
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/** GetInfo over HTTP/1.1 to 127.0.0.1:port with this Host header (and, optionally, from this local address). */
function getInfoWithHost(port: number, host: string, localAddress?: string): Promise<{ status: number; body: string }> {
  return new Promise((ok, fail) => {
    const req = httpRequest({
      host: "127.0.0.1",
      port,
      method: "POST",
      path: "/taskwire.v1.TaskStats/GetInfo",
      headers: { host, "content-type": "application/json" },
      ...(localAddress && { localAddress }),
    }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => ok({ status: res.statusCode!, body }));
    });
    req.on("error", fail);
    req.end("{}");
  });
}

describe("the Host check stays on whenever authentication is off", () => {
  let server: Awaited<ReturnType<typeof serveCli>>;
  beforeAll(async () => {
    if (!existsSync(resolve(root, "dist/src/cli/run.js"))) {
      throw new Error("dist/ is missing: run `npm run build` first");
    }
    server = await serveCli([
      "--source",
      "sim",
      "--host",
      "0.0.0.0",
      "--port",
      "0",
      "--allow-unauthenticated",
      "--allowed-host",
      "ops.example",
    ]);
  }, 120_000);
  afterAll(() => server?.stop());

  it("0.0.0.0 without auth refuses a rebinding attacker's Host (403) and answers the machine's own names", async () => {
    const p = server.port;
    for (const evil of [`evil.example:${p}`, "evil.example", `127.0.0.1.evil.example:${p}`, `[::2]:${p}`]) {
      const r = await getInfoWithHost(p, evil);
      expect({ evil, status: r.status }).toEqual({ evil, status: 403 });
      expect(r.body).toMatch(/is not a name of this server.*DNS rebinding/);
    }
    const own = [
      `127.0.0.1:${p}`,
      `localhost:${p}`,
      `${hostname()}:${p}`,
      `${hostname().toUpperCase()}:${p}`,
      `ops.example:${p}`,
      ...Object.values(networkInterfaces()).flatMap((l) => l ?? []).map((a) =>
        a.family === "IPv6" ? `[${a.address.split("%")[0]}]:${p}` : `${a.address}:${p}`
      ),
    ];
    for (const name of own) {
      expect({ name, status: (await getInfoWithHost(p, name)).status }).toEqual({ name, status: 200 });
    }
  });

  it("real gRPC (HTTP/2 :authority) is refused the same way", async () => {
    const session = http2Connect(`http://127.0.0.1:${server.port}`);
    try {
      const status = (authority: string) =>
        new Promise<string | undefined>((ok, fail) => {
          const stream = session.request({
            ":method": "POST",
            ":path": "/taskwire.v1.TaskStats/GetInfo",
            ":authority": authority,
            "content-type": "application/grpc",
            te: "trailers",
          });
          let code: string | undefined;
          stream.on("response", (h) => (code = h["grpc-status"] as string | undefined ?? code));
          stream.on("trailers", (h) => (code = h["grpc-status"] as string | undefined ?? code));
          stream.resume(); // read the body, so the stream ends
          stream.on("close", () => ok(code));
          stream.on("error", fail);
          stream.end(Buffer.from([0, 0, 0, 0, 0]));
        });
      expect(await status(`evil.example:${server.port}`)).toBe(String(Code.PermissionDenied));
      expect(await status(`127.0.0.1:${server.port}`)).toBe("0");
    } finally {
      session.close();
    }
  });

  it("createHostCheck: names match exactly, ports and a trailing dot aside", () => {
    const check = createHostCheck(["ops.example"], { bind: "10.1.2.3", machine: ["web-1", "fd00::5"] });
    for (const ok of ["ops.example:1", "OPS.EXAMPLE.", "10.1.2.3:7878", "web-1", "[fd00::5]:7878", "127.9.9.9"]) {
      expect({ ok, allowed: check(ok) }).toEqual({ ok, allowed: true });
    }
    for (const bad of ["ops.example.evil", "x.ops.example", "web-10", "[fd00::6]", "", "0.0.0.0"]) {
      expect({ bad, allowed: check(bad) }).toEqual({ bad, allowed: false });
    }
    // /etc/hosts names of this machine's addresses count; other hosts' do not.
    const hosts = join(mkdtempSync(join(tmpdir(), "taskwire-hosts-")), "hosts");
    writeFileSync(hosts, "127.0.1.1 box.example box # the FQDN\n192.0.2.55 elsewhere.example\n# 127.0.0.1 commented\n");
    const names = machineNames(hosts);
    expect(names).toEqual(expect.arrayContaining(["box.example", "box", hostname()]));
    expect(names).not.toContain("elsewhere.example");
    expect(names).not.toContain("commented");
    // A wildcard bind address names nothing.
    expect(createHostCheck([], { bind: "0.0.0.0", machine: [] })("0.0.0.0:1")).toBe(false);
  });
});

describe("without authentication, every loopback address is one caller", () => {
  it("the call rate is shared across 127.0.0.0/8: 30 addresses do not get 30 bursts", async () => {
    const running = await startServer(createSimSource({ cpus: 1, exitRate: 0 }), {}, {
      admission: { callsPerSecond: 1, callBurst: 5 },
    });
    try {
      const port = Number(new URL(running.url).port);
      const statuses: number[] = [];
      for (let i = 2; i < 32; i++) {
        statuses.push((await getInfoWithHost(port, `127.0.0.1:${port}`, `127.0.0.${i}`)).status);
      }
      // One burst of 5 (plus what a second refills), not one per address.
      expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(7);
      expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(23);
      const refused = await getInfoWithHost(port, `127.0.0.1:${port}`, "127.0.0.77");
      expect(JSON.parse(refused.body).message).toMatch(/"anonymous@loopback" is over its call rate/);
    } finally {
      await running.close();
    }
  });

  it("so are listener ownership limits, and the pacer's caller key", async () => {
    const running = await startServer(createSimSource({ cpus: 2, exitRate: 0 }), { maxListenersPerPrincipal: 1 });
    try {
      const first = await running.client.register({ cpumask: "0" });
      expect(first.listenerId).not.toBe("");
      // A second loopback address is the same caller: its one listener is taken.
      const port = Number(new URL(running.url).port);
      const other = await new Promise<{ status: number; body: string }>((ok, fail) => {
        const req = httpRequest({
          host: "127.0.0.1",
          port,
          method: "POST",
          path: "/taskwire.v1.TaskStats/Register",
          headers: { "content-type": "application/json" },
          localAddress: "127.0.0.9",
        }, (res) => {
          let body = "";
          res.on("data", (d: Buffer) => (body += d.toString()));
          res.on("end", () => ok({ status: res.statusCode!, body }));
        });
        req.on("error", fail);
        req.end(JSON.stringify({ cpumask: "1" }));
      });
      expect(other.status).toBe(429);
      expect(JSON.parse(other.body).message).toMatch(/"anonymous@loopback" owns its limit of 1 listeners/);
      const info = await running.client.getInfo({ listeners: true });
      expect(info.listenerDetails.map((l) => l.owner)).toEqual(["anonymous@loopback"]);
    } finally {
      await running.close();
    }
    const server = createServer({ source: createSimSource({ cpus: 1, exitRate: 0 }) });
    try {
      const key = (address: string) => server.caller({ address }, undefined).key;
      expect(key("127.0.0.5")).toBe(key("127.200.0.9"));
      expect(key("::1")).toBe(key("127.0.0.1"));
      expect(key("::ffff:127.0.0.3")).toBe(key("127.0.0.1"));
      expect(key("10.0.0.1")).not.toBe(key("10.0.0.2"));
      expect(key("2001:db8:1:2::1")).toBe(key("2001:db8:1:2:ffff::9"));
      expect(key("2001:db8:1:2::1")).not.toBe(key("2001:db8:1:3::1"));
    } finally {
      await server.close();
    }
  });

  it("addressBucket: loopback as one, IPv6 by /64, IPv4 as itself", () => {
    expect(addressBucket("127.3.4.5")).toBe("loopback");
    expect(addressBucket("::1")).toBe("loopback");
    expect(addressBucket("2001:DB8::1")).toBe("2001:db8:0:0::/64");
    expect(addressBucket("2001:db8:0:0:8000::1")).toBe("2001:db8:0:0::/64");
    expect(addressBucket("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
    expect(addressBucket("192.0.2.7")).toBe("192.0.2.7");
    expect(addressBucket("::ffff:192.0.2.7")).toBe("192.0.2.7");
  });

  it("an authenticated principal keeps its own name, whatever it looks like", async () => {
    const token = newToken();
    const file = join(mkdtempSync(join(tmpdir(), "taskwire-review-")), "auth.json");
    writeFileSync(
      file,
      JSON.stringify({
        principals: { "anonymous@127.0.0.1": { roles: ["read", "subscribe"] } },
        tokens: { [hashToken(token)]: "anonymous@127.0.0.1" },
      }),
    );
    const running = await startServer(createSimSource({ cpus: 1, exitRate: 0 }), {}, {
      authenticator: createAuthenticator({ tokenFile: file }),
    });
    try {
      const client = createTaskwireClient(running.url, { token });
      const reg = await client.register({ cpumask: "0" });
      // Its listener is its own, found under its own name (not a bucket's).
      const info = await client.getInfo({ listeners: true });
      expect(info.listenerDetails.map((l) => [l.listenerId, l.owner])).toEqual([
        [reg.listenerId, "anonymous@127.0.0.1"],
      ]);
      await client.deregister({ listenerId: reg.listenerId, cpumask: "0" });
    } finally {
      await running.close();
    }
  });
});
