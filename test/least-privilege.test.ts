/**
 * `taskwire serve` with least privilege: as uid 65534 (no passwd entry
 * needed) holding only CAP_NET_ADMIN, as an ambient capability, switched to
 * by setpriv (util-linux) with a clean environment, as a service manager
 * would start it. On Node (the built CLI: run `npm run build` first), Deno
 * and Bun (the TypeScript sources), against the real kernel. Without
 * CAP_NET_ADMIN the server refuses to start and says why.
 *
 * Needs root (to switch uid and hand out the capability), setpriv and the
 * kernel's TASKSTATS family; where one is absent the suite skips naming it,
 * and with TASKWIRE_REQUIRE_NETLINK=1 (CI on these machines) absence fails.
 */
import { readFileSync } from "node:fs";
import { createTaskwireClient } from "@taskwire/client";
import { describe, expect, it } from "vitest";
import { DEFAULT_SOCKET_BUFFER } from "../src/sources/netlink/netlink-source.ts";
import { readerWorkerUrl } from "../src/sources/netlink/_worker-url.ts";
import { collectExits, eventually } from "./helpers.ts";
import { helperPath, runHelper } from "./native.ts";
import { bin, NET_ADMIN_MASK, procStatus, root, run, serve, setpriv, setprivMissing, UID } from "./setpriv.ts";

const missing = await setprivMissing();
if (missing !== undefined && process.env["TASKWIRE_REQUIRE_NETLINK"] === "1") {
  throw new Error(`TASKWIRE_REQUIRE_NETLINK=1 but ${missing}`);
}

// Twice rmem_max (at least the default), so only SO_RCVBUFFORCE can set it.
const rmemMax = missing === undefined ? Number(readFileSync("/proc/sys/net/core/rmem_max", "utf8")) : 0;
const SOCKET_BUFFER = Math.min(Math.max(DEFAULT_SOCKET_BUFFER, 2 * rmemMax), 2 ** 30);
const serveArgs = [
  "serve",
  "--source",
  "netlink",
  "--host",
  "127.0.0.1",
  "--port",
  "0",
  "--socket-buffer",
  String(SOCKET_BUFFER),
];

// Each runtime's way to run `taskwire serve`: Node the built CLI from "/" (nothing read from the working
// directory); Deno and Bun the TypeScript sources from the checkout (Deno reads deno.json's imports there).
const runtimes: [name: string, command: string[], cwd: string][] = [
  ["node", [process.execPath, bin, ...serveArgs], "/"],
  ["deno", [`${root}node_modules/deno/deno`, "run", "--allow-all", `${root}src/cli/run.ts`, ...serveArgs], root],
  ["bun", [`${root}node_modules/bun/bin/bun.exe`, `${root}src/cli/run.ts`, ...serveArgs], root],
];

const suite = missing === undefined ? describe : describe.skip;
const title = missing === undefined
  ? `serve as uid ${UID} holding only CAP_NET_ADMIN`
  : `serve as uid ${UID} holding only CAP_NET_ADMIN SKIPPED: ${missing}`;

suite(title, () => {
  for (const [name, command, cwd] of runtimes) {
    it(
      `${name}: GetInfo, GetPid of a root process, and a child's exit record, with nothing but CAP_NET_ADMIN`,
      async () => {
        helperPath();
        const server = await serve(["setpriv", ...setpriv(["net_admin"]), ...command], cwd);
        let code: number | null;
        try {
          // setpriv execs the runtime, so the child's pid is the server's: it is who we asked for.
          const self = procStatus(server.child.pid!);
          expect(self.uid).toBe(`${UID}\t${UID}\t${UID}\t${UID}`);
          expect([self.capEff, self.capAmb, self.capBnd]).toEqual([NET_ADMIN_MASK, NET_ADMIN_MASK, NET_ADMIN_MASK]);
          expect(server.stderr()).toMatch(/ with \w+ [\d.]+, holding CAP_NET_ADMIN\n/);

          const client = createTaskwireClient(server.url);
          const info = await client.getInfo({});
          expect(info.source).toBe("netlink");
          expect(info.capabilities).toEqual(["CAP_NET_ADMIN"]);

          const { stats } = await client.getPid({ pid: process.pid }); // this test runs as root
          expect(stats!.acPid).toBe(process.pid);
          expect(stats!.acUid).toBe(0);

          const cpu = Number(info.possibleCpus.split(/[-,]/)[0]);
          const sub = await collectExits(client, { cpumask: String(cpu) });
          const comm = `tw-lp-${name}`;
          const child = await runHelper(["exit", comm, "3"], cpu);
          const exitOf = () =>
            sub.events.flatMap((e) =>
              e.event.case === "exit" && e.event.value.pid === child.pid ? [e.event.value] : []
            );
          await eventually(() => exitOf().length > 0, 10_000);
          await sub.stop();
          expect(exitOf()).toHaveLength(1);
          expect(exitOf()[0]!.pidStats!.acComm).toBe(comm);
          expect(exitOf()[0]!.pidStats!.acExitcode).toBe(3 << 8); // wait(2) status
          // SO_RCVBUFFORCE set a buffer past net.core.rmem_max, which plain SO_RCVBUF cannot:
          // it too needs only CAP_NET_ADMIN. (The kernel reports double what was set.)
          expect((await client.getInfo({})).socketBuffer).toBe(2 * SOCKET_BUFFER);
        } finally {
          code = await server.stop();
        }
        expect(code, server.stderr()).toBe(0);
        expect(server.stderr()).not.toMatch(/warning/); // read to its end: no start-up line warned
        expect(server.stderr()).toMatch(/SIGTERM, shutting down/);
        expect(server.stderr()).not.toMatch(/\n\s+at /); // no stack on the way out
      },
      60_000,
    );
  }

  it("without CAP_NET_ADMIN the netlink source refuses to start, naming the capability (no stack)", async () => {
    const { code, stderr } = await run(["setpriv", ...setpriv([]), process.execPath, bin, ...serveArgs]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^taskwire: --source netlink: the netlink source cannot run: .*needs CAP_NET_ADMIN/);
    expect(stderr).toMatch(/--source sim/);
    // and how to grant it, with where the README says more
    expect(stderr).toMatch(
      /run as root, or as a user holding CAP_NET_ADMIN as an ambient capability \(README, "Privileges/,
    );
    expect(stderr.trim().split("\n")).toHaveLength(1);
  }, 30_000);

  it("with no capabilities, the sim source serves and says it holds none (no warning)", async () => {
    const server = await serve(
      ["setpriv", ...setpriv([]), process.execPath, bin, "serve", "--source", "sim", "--port", "0"],
      "/",
    );
    try {
      expect(server.stderr()).toMatch(/, holding no capabilities\n/);
      const info = await createTaskwireClient(server.url).getInfo({});
      expect([info.source, info.capabilities]).toEqual(["sim", []]);
    } finally {
      await server.stop();
    }
    expect(server.stderr()).not.toMatch(/warning/);
  }, 30_000);

  it("--enable-delayacct as uid 65534 fails with what it needs and what to do instead (no stack)", async () => {
    const command = ["setpriv", ...setpriv(["net_admin"]), process.execPath, bin, ...serveArgs, "--enable-delayacct"];
    const before = readFileSync("/proc/sys/kernel/task_delayacct", "utf8").trim();
    if (before === "1") {
      // Already on (booted so, or set by an operator): nothing to write, so the server starts and says so.
      const server = await serve(command, "/");
      expect(await server.stop()).toBe(0);
      expect(server.stderr()).toMatch(/kernel\.task_delayacct was already 1/);
      return;
    }
    const { code, stderr } = await run(command);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^taskwire: cannot turn on delay accounting: writing \/proc\/sys\/kernel\/task_delayacct/);
    expect(stderr).toMatch(
      /EACCES; the kernel lets only uid 0 holding CAP_SYS_ADMIN change it \(this process is uid 65534/,
    );
    expect(stderr).toMatch(/sysctl -w kernel\.task_delayacct=1/);
    expect(stderr.trim().split("\n")).toHaveLength(1);
    expect(readFileSync("/proc/sys/kernel/task_delayacct", "utf8").trim()).toBe(before);
  }, 30_000);

  const lowPorts = missing === undefined
    ? Number(readFileSync("/proc/sys/net/ipv4/ip_unprivileged_port_start", "utf8"))
    : 0;
  it.skipIf(lowPorts <= 1)(
    `a port below ${lowPorts} (net.ipv4.ip_unprivileged_port_start) is refused naming CAP_NET_BIND_SERVICE`,
    async () => {
      const port = String(lowPorts - 1);
      const { code, stderr } = await run([
        "setpriv",
        ...setpriv(["net_admin"]),
        process.execPath,
        bin,
        "serve",
        "--source",
        "netlink",
        "--port",
        port,
      ]);
      expect(code).toBe(1);
      expect(stderr).toMatch(
        new RegExp(`no permission to listen on --port ${port} \\(127\\.0\\.0\\.1\\): .*CAP_NET_BIND_SERVICE`),
      );
    },
    30_000,
  );

  it(
    "as root, the start-up line warns that taskwire needs only CAP_NET_ADMIN, and GetInfo lists what root holds",
    async () => {
      const server = await serve([process.execPath, bin, ...serveArgs], "/");
      try {
        const warning =
          /\ntaskwire: warning: running as root with [^;]+; taskwire needs only CAP_NET_ADMIN: run it as a user holding just that \(setpriv or deploy\/taskwire\.service; README, "Privileges: only CAP_NET_ADMIN"\)\n/;
        await eventually(() => warning.test(server.stderr()));
        const info = await createTaskwireClient(server.url).getInfo({});
        const capEff = BigInt(`0x${procStatus(server.child.pid!).capEff}`);
        expect(info.capabilities).toContain("CAP_NET_ADMIN");
        expect(info.capabilities.length).toBe(capEff.toString(2).replaceAll("0", "").length);
      } finally {
        await server.stop();
      }
    },
    30_000,
  );
});

// Running from the TypeScript sources on Node (as vitest does), the reader worker is bundled at start.
// A user who may not write the checkout (a service user beside a root-owned install) must be able to.
it("the reader worker bundled from sources on Node is written nowhere: a data: URL whose koffi is a file URL", async () => {
  const url = await readerWorkerUrl();
  expect(url.protocol).toBe("data:");
  const code = Buffer.from(url.href.slice(url.href.indexOf(",") + 1), "base64").toString("utf8");
  expect(code).toMatch(/import\("file:\/\/\/[^"]*\/node_modules\/koffi\/[^"]+"\)/);
  expect(code).not.toMatch(/import\("koffi"\)/);
  expect(code).toMatch(/\/\/# sourceURL=file:\/\/\/.*\/reader-worker\.bundle\.mjs\n$/);
});
