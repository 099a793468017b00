/** The netlink source under Deno and Bun (npm devDependencies), spawned from vitest against the real kernel. */
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTaskwireClient, LimitExceededError, watchExits } from "@taskwire/client";
import { hashToken, newToken } from "../src/auth/tokens.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { eventually, sleep, spawnServer, startServer } from "./helpers.ts";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { helperPath, netlinkMissing } from "./native.ts";

const root = new URL("..", import.meta.url).pathname;
const missing = await netlinkMissing();

// The script that starts a netlink source and never closes it (test/runtimes/unclosed-source.mjs), and the source
// Node runs it with (npm test builds before vitest runs).
const unclosed = `${root}test/runtimes/unclosed-source.mjs`;
const builtSource = `${root}dist/src/sources/netlink/netlink-source.js`;

// Deno grants reads of /sys and /proc (the possible CPUs, the delayacct sysctl) only with --allow-all.
const DENO_PERMS = ["--allow-all"];
const runtimes: [string, (script: string, args: string[]) => [string, string[]]][] = [
  ["deno", (script, args) => [`${root}node_modules/.bin/deno`, ["run", ...DENO_PERMS, script, ...args]]],
  ["bun", (script, args) => [`${root}node_modules/.bin/bun`, [script, ...args]]],
];

describe.skipIf(missing !== undefined)(
  missing === undefined ? "netlink source on Deno and Bun" : `netlink source on Deno and Bun SKIPPED: ${missing}`,
  () => {
    for (const [name, command] of runtimes) {
      it(
        `${name}: GET, a named child's exit record and the reader's doorbell through ${name}'s FFI and worker`,
        async () => {
          const comm = `tw-${name}`;
          const [bin, args] = command(`${root}test/runtimes/netlink-smoke.ts`, [helperPath(), comm]);
          const { stdout } = await promisify(execFile)(bin, args, { cwd: root, timeout: 60_000 });
          const result = JSON.parse(stdout.trim().split("\n").pop()!);
          expect(result.runtime).toBe(name);
          expect(result.selfPid).toBe(true);
          expect(result.version).toBeGreaterThanOrEqual(1);
          expect(result.exit).toEqual({ pid: result.childPid, cpu: 0, comm, code: 5 << 8 });
          // Without the doorbell each is 0-5,000 ms (the idle poll's timeout on a main thread): a median under 20 ms
          // in well under 1% of runs.
          const sorted = [...(result.controlMs as number[])].sort((a, b) => a - b);
          expect(sorted[2], `unwatch while idle took ${sorted.map((t) => t.toFixed(1)).join(", ")} ms`).toBeLessThan(
            20,
          );
        },
        90_000,
      );
    }
  },
);

// A server closes its source; a script or tool that starts one must still end once it stops watching. The reader's
// worker holds the process as a listening server does: while it watches a CPU, or a synced() waits on it (before,
// Node and Bun stayed up after the last unwatch until killed).
describe.skipIf(missing !== undefined)(
  missing === undefined
    ? "a started, never-closed netlink source"
    : `a started, never-closed netlink source SKIPPED: ${missing}`,
  () => {
    const source = `${root}src/sources/netlink/netlink-source.ts`;
    const cases: [string, string, string[]][] = [
      ["node", process.execPath, [unclosed, builtSource]],
      ["deno", `${root}node_modules/.bin/deno`, ["run", ...DENO_PERMS, unclosed, source]],
      ["bun", `${root}node_modules/.bin/bun`, [unclosed, source]],
    ];
    for (const [name, bin, args] of cases) {
      it(`${name}: keeps its process up while it watches a CPU, and lets it end once it watches none`, async () => {
        const watching = spawn(bin, [...args, "keep"], { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
        try {
          let out = "";
          watching.stdout.on("data", (d: Buffer) => (out += d.toString()));
          const ended = new Promise((r) => watching.once("exit", r));
          await eventually(() => out.includes("synced"), 20_000);
          const stillUp = await Promise.race([ended.then(() => false), sleep(1500).then(() => true)]);
          expect(stillUp, "a source that watches a CPU keeps its process up").toBe(true);
        } finally {
          watching.kill("SIGKILL");
        }
        const { stdout } = await promisify(execFile)(bin, [...args, "unwatch"], {
          cwd: root,
          timeout: 20_000,
          killSignal: "SIGKILL",
        }).catch((err: { killed?: boolean; message: string }) => {
          throw new Error(err.killed ? `still running after 20 s: the source held the process open` : err.message);
        });
        expect(stdout.trim()).toBe("synced"); // it awaited synced() to the end: the process was held while it waited
      }, 60_000);
    }
  },
);

// Node joins worker threads as the process exits, and the reader's worker sits in a foreign poll() whose timeout is
// 5 s: without the exit hook that stops the worker and rings its doorbell, an exit while watching took 4.0-4.7 s on
// Node. (Deno and Bun do not join their workers at exit: nothing there to test.)
describe.skipIf(missing !== undefined)(
  missing === undefined
    ? "Node: the process's exit stops the reader's worker"
    : `Node: the process's exit stops the reader's worker SKIPPED: ${missing}`,
  () => {
    it(
      "once the process's exit listeners ran, the worker reads no more (its next exit never reaches the sink)",
      async () => {
        const { stdout } = await promisify(execFile)(process.execPath, [
          unclosed,
          builtSource,
          "emit-exit",
          helperPath(),
        ], {
          cwd: root,
          timeout: 30_000,
          killSignal: "SIGKILL",
        });
        expect(JSON.parse(stdout.trim().split("\n").pop()!)).toEqual({ before: true, after: false });
      },
      60_000,
    );

    it("process.exit() while it watches a CPU does not wait for the idle poll's timeout", async () => {
      const took: number[] = [];
      for (let i = 0; i < 3; i++) {
        const child = spawn(process.execPath, [unclosed, builtSource, "exit"], {
          cwd: root,
          stdio: ["ignore", "pipe", "inherit"],
        });
        let out = "";
        child.stdout.on("data", (d: Buffer) => (out += d.toString()));
        const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
        expect(code, `the script's output: ${out}`).toBe(0);
        took.push(Date.now() - Number(/exiting (\d+)/.exec(out)?.[1]));
      }
      // Each 15-25 ms here; a broken hook passes only if an exit on CPU 0 happened to end all three polls.
      expect(Math.max(...took), `exits took ${took.join(", ")} ms`).toBeLessThan(2000);
    }, 60_000);
  },
);

describe("the server on Deno, Bun and Node (their start scripts), the SDK as their client", () => {
  // Each start script serves on the runtime its name says (`taskwire serve`, same flags).
  const servers: [string, string, string, string[]][] = [
    ["deno task start", "deno", `${root}node_modules/deno/deno`, ["task", "start", "--source", "sim", "--port", "0"]],
    ["bun run start:bun", "bun", `${root}node_modules/.bin/bun`, [
      "run",
      "start:bun",
      "--",
      "--source",
      "sim",
      "--port",
      "0",
    ]],
    // --ignore-scripts skips only prestart's build (npm test built already); `bun run start` runs this same script.
    ["npm start", "node", "npm", ["start", "--ignore-scripts", "--", "--source", "sim", "--port", "0"]],
  ];
  for (const [name, runtime, bin, args] of servers) {
    it(`${name} serves the sim source to the SDK, running on ${runtime}`, async () => {
      const server = await spawnServer(bin, args, root);
      try {
        expect(server.runtime).toBe(runtime);
        const client = createTaskwireClient(server.url);
        const info = await client.getInfo({});
        expect(info.source).toBe("sim");
        // The adapter passes the peer's address: an anonymous caller is known by it (limits, listeners, access log).
        expect(info.principal).toBe("anonymous@127.0.0.1");
        let n = 0;
        for await (const ev of watchExits(client, { cpumask: "0-7" })) {
          expect(ev.event.case).toBe("exit");
          if (++n === 5) break;
        }
        // gRPC is served over HTTP/2 on Node only: elsewhere the SDK says what to use, not connect-es's "HTTP 415".
        const grpc = createTaskwireClient(server.url, { protocol: "grpc", retry: false });
        if (runtime === "node") expect((await grpc.getInfo({})).source).toBe("sim");
        else {
          // Deno answers 415; Bun's server does not take HTTP/2 without TLS.
          const refused =
            /(refused gRPC \(HTTP 415\)|did not take gRPC's HTTP\/2 \(a protocol error\)): .*use protocol "connect" \(the default\) or "grpc-web"/;
          await expect(grpc.getInfo({})).rejects.toThrow(refused);
          await expect(grpc.subscribeExits({ cpumask: "0" })[Symbol.asyncIterator]().next()).rejects.toThrow(refused);
        }
      } finally {
        server.stop();
      }
    }, 60_000);
  }

  it("a quiet stream on Bun survives past Bun.serve's default 10 s idle timeout", async () => {
    const { url, stop } = await spawnServer(`${root}node_modules/.bin/bun`, [
      "src/cli/run.ts",
      "serve",
      "--source",
      "sim",
      "--sim-exit-rate",
      "0",
      "--port",
      "0",
    ], root);
    try {
      const t0 = Date.now();
      const kinds: string[] = [];
      for await (const m of createTaskwireClient(url).subscribeExits({ cpumask: "0", heartbeatMs: 13_000 })) {
        kinds.push(m.heartbeat ? "heartbeat" : "open");
        if (m.heartbeat) break;
      }
      expect(kinds).toEqual(["open", "heartbeat"]);
      expect(Date.now() - t0).toBeGreaterThan(12_000);
    } finally {
      stop();
    }
  }, 60_000);

  for (const [name, command] of runtimes) {
    it(`the SDK runs on ${name} (fetch transport) against a Node server`, async () => {
      const running = await startServer(createSimSource({ cpus: 4, exitRate: 500, seed: 2 }));
      try {
        const [bin, args] = command(`${root}test/runtimes/sdk-smoke.ts`, [running.url]);
        const { stdout } = await promisify(execFile)(bin, args, { cwd: root, timeout: 60_000 });
        const out = JSON.parse(stdout.trim().split("\n").pop()!);
        expect(out.source).toBe("sim");
        expect(out.cpus).toHaveLength(5);
        expect(out.cpus.every((c: number) => c >= 0 && c <= 3)).toBe(true);
      } finally {
        await running.close();
      }
    }, 90_000);
  }
});

// The dashboard's files, asked for in one write on a fresh server (as a pipelining client or proxy does). Bun 1.4's
// server closes a connection, unanswered, when a pipelined request arrives while the response ahead of it waits on
// I/O; /ui's files were read asynchronously the first time, so Bun answered none of them.
describe("the dashboard's files, pipelined on a fresh server, on Deno, Bun and Node", () => {
  const args = ["src/cli/run.ts", "serve", "--source", "sim", "--port", "0"];
  const servers: [string, string, string[]][] = [
    ["deno", `${root}node_modules/deno/deno`, ["run", ...DENO_PERMS, ...args]],
    ["bun", `${root}node_modules/.bin/bun`, args],
    ["node", process.execPath, ["bin/taskwire.js", ...args.slice(1)]],
  ];
  const paths = ["/ui", "/ui/dashboard.js", "/ui/dashboard.css", "/ui/uplot.css", "/ui/taskwire-client.js"];

  // Where the response at the start of `buf` ends (its body by content-length or chunks; Bun sends the files
  // chunked), or -1 while it is incomplete.
  const responseEnd = (buf: Buffer): number => {
    const end = buf.indexOf("\r\n\r\n");
    if (end < 0) return -1;
    const head = buf.subarray(0, end).toString("latin1");
    if (!/\r\ntransfer-encoding: *chunked/i.test(head)) {
      const at = end + 4 + Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      return buf.length < at ? -1 : at;
    }
    for (let at = end + 4;;) {
      const line = buf.indexOf("\r\n", at);
      if (line < 0) return -1;
      const size = parseInt(buf.subarray(at, line).toString("latin1"), 16);
      at = line + 2 + size + 2;
      if (buf.length < at) return -1;
      if (size === 0) return at;
    }
  };

  // The statuses of the responses read off `socket` in order, until it closes or all came.
  const statuses = (socket: Socket, want: number): Promise<number[]> =>
    new Promise((resolve) => {
      let buf = Buffer.alloc(0);
      const got: number[] = [];
      const done = () => (socket.destroy(), resolve(got));
      socket.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        for (let at = responseEnd(buf); at >= 0; at = responseEnd(buf)) {
          got.push(Number(buf.subarray(0, 12).toString("latin1").split(" ")[1]));
          buf = buf.subarray(at);
          if (got.length === want) return done();
        }
      });
      socket.on("close", done).on("error", () => {});
    });

  for (const [name, bin, argv] of servers) {
    it(`${name}: every file is answered, in order`, async () => {
      const { url, stop } = await spawnServer(bin, argv, root);
      try {
        const { hostname, port, host } = new URL(url);
        const socket = connect(Number(port), hostname);
        socket.write(paths.map((p) => `GET ${p} HTTP/1.1\r\nhost: ${host}\r\n\r\n`).join(""));
        expect(await statuses(socket, paths.length)).toEqual(paths.map(() => 200));
      } finally {
        stop();
      }
    }, 60_000);
  }
});

// Calls under way are counted on every runtime: a request from its arrival until its response is delivered or its
// client gone (Node's adapter sees the response's close, Deno's reports it, Bun's reads the body's end). Each call
// held here is a GetInfo whose body never arrives, so its handler waits on it.
describe("calls under way, counted the same on Deno, Bun and Node", () => {
  const limit = ["--source", "sim", "--port", "0", "--max-calls-in-flight-per-principal", "2"];
  const servers: [string, string, string[]][] = [
    ["deno", `${root}node_modules/deno/deno`, ["run", ...DENO_PERMS, "src/cli/run.ts", "serve", ...limit]],
    ["bun", `${root}node_modules/.bin/bun`, ["src/cli/run.ts", "serve", ...limit]],
    ["node", process.execPath, ["bin/taskwire.js", "serve", ...limit]],
  ];
  const holdCall = (url: string): Socket => {
    const { hostname, port, host } = new URL(url);
    const socket = connect(Number(port), hostname);
    socket.on("error", () => {});
    socket.write(
      `POST /taskwire.v1.TaskStats/GetInfo HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\n` +
        "content-length: 100\r\n\r\n{",
    );
    return socket;
  };
  // The first answer `done` accepts within 5 s, or the last one given.
  const answerWithin = async (ask: () => Promise<string>, done: (a: string) => boolean): Promise<string> => {
    let last = "";
    await eventually(async () => done(last = await ask())).catch(() => {});
    return last;
  };
  // A request written as is; resolves with its response's status (0: the connection closed unanswered).
  const rawStatus = (url: string, text: string): Promise<number> => {
    const { hostname, port } = new URL(url);
    return new Promise((resolve) => {
      const socket = connect(Number(port), hostname, () => socket.write(text));
      let got = "";
      socket.on("data", (d: Buffer) => {
        got += d.toString("latin1");
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(got);
        if (m) resolve(Number(m[1])), socket.destroy();
      });
      socket.on("error", () => resolve(0));
      socket.on("close", () => resolve(0));
    });
  };
  // Hosts no URL can be made of (none at all on HTTP/1.0: Deno then uses its own address): never a 500, an error
  // thrown outside the app, over a limit or not.
  const badHosts = ["GET /healthz HTTP/1.1\r\nhost: a b\r\n\r\n", "GET /healthz HTTP/1.0\r\n\r\n"];
  const refusal = (call: Promise<unknown>) =>
    call.then(() => "answered", (err: unknown) => err instanceof LimitExceededError ? err.message : String(err));
  for (const [runtime, bin, args] of servers) {
    it(
      `${runtime}: refuses a principal past its limit, ends each count as its response is delivered or its client leaves`,
      async () => {
        const server = await spawnServer(bin, args, root);
        const held: Socket[] = [];
        try {
          expect(server.runtime).toBe(runtime);
          const client = createTaskwireClient(server.url, { retry: false });
          // Traffic that must leave no count behind: unary calls, a stream read and left, /healthz.
          for (let i = 0; i < 20; i++) await client.getInfo({});
          // A stream is counted among streams once admitted, until its response is over: with one allowed, each of
          // these is admitted only once the one before it has been let go.
          const stream = () =>
            refusal((async () => {
              for await (const _ of client.subscribeExits({ cpumask: "0-3" })) break;
            })());
          for (let i = 0; i < 3; i++) expect(await answerWithin(stream, (a) => a === "answered")).toBe("answered");
          for (let i = 0; i < 3; i++) expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
          held.push(holdCall(server.url));
          await sleep(500);
          expect(await refusal(client.getInfo({}))).toBe("answered"); // the second call under way: at the limit
          held.push(holdCall(server.url));
          const over = await answerWithin(() => refusal(client.getInfo({})), (a) => a !== "answered");
          expect(over).toMatch(/2 calls under way.*--max-calls-in-flight-per-principal/);
          const health = await fetch(`${server.url}/healthz`);
          expect([health.status, await health.text()]).toEqual([429, expect.stringMatching(/calls under way/)]);
          for (const text of badHosts) expect(await rawStatus(server.url, text), text).toBe(429);
          for (const s of held.splice(0)) s.destroy();
          expect(await answerWithin(() => refusal(client.getInfo({})), (a) => a === "answered")).toBe("answered");
          held.push(holdCall(server.url));
          await sleep(500);
          expect(await refusal(client.getInfo({}))).toBe("answered"); // the two that left are no longer counted
          for (const text of badHosts) expect(await rawStatus(server.url, text), text).toBeOneOf([200, 400, 403]);
        } finally {
          for (const s of held) s.destroy();
          server.stop();
        }
      },
      60_000,
    );
  }
});

// A SubscribeExits request for CPUs 0-1 as raw HTTP/1.1, in Connect's JSON streaming (one envelope).
function subscribeRequest(url: string, token?: string): Buffer {
  const body = Buffer.from(JSON.stringify({ cpumask: "0-1" }));
  const envelope = Buffer.alloc(5);
  envelope.writeUInt32BE(body.length, 1);
  const auth = token === undefined ? "" : `authorization: Bearer ${token}\r\n`;
  const head = `POST /taskwire.v1.TaskStats/SubscribeExits HTTP/1.1\r\nhost: ${new URL(url).host}\r\n${auth}` +
    `content-type: application/connect+json\r\nconnect-protocol-version: 1\r\ncontent-length: ${
      5 + body.length
    }\r\n\r\n`;
  return Buffer.concat([Buffer.from(head), envelope, body]);
}

describe("a stream whose client reads nothing, dropped while the memory budget is past its limit, on Deno, Bun and Node", () => {
  // A 1 MiB budget and a lease of 2 s, exits at 20,000/s. 20 SubscribeExits streams over HTTP/1.1 of one principal
  // ("hog"), whose clients never read, fill its fair share (seven eighths of the budget, alone); a never-read stream
  // of a second principal ("late") then takes the budget past its limit: it is charged within its fair share, past
  // the limit by what the first holds over its own and cannot drop (batches in flight, the shared slabs their exits
  // keep alive). Each runtime's adapter drops the streams the server ends: its connection closed (a Fetch API body
  // errored: Bun then closes the connection once it has idled a second; Deno.serve offers no way to, so there it
  // closes once its client reads what was sent).
  //
  // The first principal's streams alone took the budget past its limit only by chance: all 20 are sent the same
  // exits, so what they hold once their transports are full may keep one 581 KB slab of stats vectors alive, or two.
  // With one, that principal settled at 93-97% of the budget, over its fair share, so every further exit of it was
  // refused and nothing was charged past the limit again: the sweep, rightly, ended nothing, and the wait for a stall
  // timed out (on Deno, whose streams end up holding the same few exits or only loss markers, in 5 of 34 runs on a
  // loaded 2-CPU machine; on Node in none of 12).
  const dir = mkdtempSync(join(tmpdir(), "taskwire-runtimes-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const tokens = { hog: newToken(), late: newToken(), scraper: newToken() };
  const tokenFile = join(dir, "tokens.json");
  writeFileSync(
    tokenFile,
    JSON.stringify({
      principals: { hog: { roles: ["subscribe"] }, late: { roles: ["subscribe"] }, scraper: { roles: ["metrics"] } },
      tokens: Object.fromEntries(Object.entries(tokens).map(([name, t]) => [hashToken(t), name])),
    }),
  );
  const flags = ["--source", "sim", "--sim-exit-rate", "20000", "--port", "0", "--memory-budget", "1MiB"];
  const serve = ["src/cli/run.ts", "serve", ...flags, "--lease-ms", "2000", "--token-file", tokenFile];
  const servers: [string, string, string[]][] = [
    ["deno", `${root}node_modules/deno/deno`, ["run", ...DENO_PERMS, ...serve]],
    ["bun", `${root}node_modules/.bin/bun`, serve],
    ["node", process.execPath, ["bin/taskwire.js", ...serve.slice(1)]],
  ];
  // A SubscribeExits request of the principal `token` authenticates on its own connection, never read.
  const stalledStream = (url: string, token: string): Socket => {
    const { hostname, port } = new URL(url);
    const socket = connect(Number(port), hostname);
    socket.on("error", () => {});
    socket.write(subscribeRequest(url, token));
    socket.pause();
    return socket;
  };
  // How many of `sockets` their server has closed, unread: its side of the connection past ESTABLISHED in
  // /proc/net/tcp (FIN_WAIT1 with what the client did not read still queued), or gone.
  const closedByServer = (sockets: Socket[]): number => {
    const states = new Map<number, string>(); // the client's port -> the server side's state
    for (const line of readFileSync("/proc/net/tcp", "latin1").split("\n").slice(1)) {
      const [, local, remote, state] = line.trim().split(/\s+/);
      if (local === undefined || remote === undefined || state === undefined) continue;
      if (parseInt(local.split(":")[1]!, 16) === sockets[0]!.remotePort) {
        states.set(parseInt(remote.split(":")[1]!, 16), state);
      }
    }
    return sockets.filter((s) => states.get(s.localPort!) !== "01").length;
  };
  const metric = async (url: string, name: string): Promise<number> => {
    const response = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${tokens.scraper}` } });
    return Number(new RegExp(`^${name} (\\d+)$`, "m").exec(await response.text())?.[1] ?? NaN);
  };
  const stalled = (url: string) => metric(url, "taskwire_stalled_streams_total");
  for (const [runtime, bin, args] of servers) {
    it(`${runtime}: the streams the server ends are dropped at their transport, and it serves on`, async () => {
      const server = await spawnServer(bin, args, root);
      const sockets: Socket[] = [];
      let log = "";
      server.child.stderr!.on("data", (d: Buffer) => (log += d.toString()));
      try {
        expect(server.runtime).toBe(runtime);
        for (let i = 0; i < 20; i++) sockets.push(stalledStream(server.url, tokens.hog));
        // The first principal holds its fair share (the budget less its reserve, an eighth): then the second's.
        await eventually(
          async () => (await metric(server.url, "taskwire_memory_used_bytes")) >= (1 << 20) * 7 / 8,
          30_000,
        );
        sockets.push(stalledStream(server.url, tokens.late));
        await eventually(async () => (await stalled(server.url)) > 0, 30_000);
        await sleep(1500); // the sweep's second: the rest ended with the first are counted too
        const ended = await stalled(server.url);
        // Node closes a dropped stream's connection at once, Bun once it has been idle a second (its idle timers tick
        // every few seconds), Deno not until its client reads.
        if (runtime !== "deno") await eventually(() => closedByServer(sockets) >= ended, 15_000);
        const unread = closedByServer(sockets);
        // Read now: what each socket holds (70-90 MB in all), then its end where the server dropped it. A fixed 3 s for
        // it saw none of the dropped connections closed in 2 of 12 runs on a loaded machine.
        let closed = 0;
        for (const s of sockets) {
          s.on("close", () => closed++);
          s.on("data", () => {});
          s.resume();
        }
        await eventually(() => closed >= ended, 20_000).catch(() => {});
        console.log(
          `[runtimes] ${runtime}: ${ended} of 21 stalled streams ended, ${unread} connections closed unread, ${closed} once read`,
        );
        expect(closed).toBeGreaterThanOrEqual(ended);
        // Each drop is a warning naming why, and its access line says RESOURCE_EXHAUSTED, not a client that left.
        expect(log).toMatch(/warning: SubscribeExits stream of listener \S+ ended: its client did not take the batch/);
        expect(log).toMatch(/SubscribeExits.*code=resource_exhausted/);
        expect(log).not.toMatch(/: error: /);
        expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
      } finally {
        for (const s of sockets) s.destroy();
        server.stop();
      }
    }, 100_000);
  }
});

// Streams pipelined behind another on one HTTP/1.1 connection, which the client then resets: nothing of them may be
// kept (on Node a response queued behind another never emitted 'close', so its listener and queue were held for the
// life of the process: test/stream-resets.test.ts). Each runtime treats the pipelined request its own way: Node
// serves both at once, Deno.serve the second only after the first, and Bun cancels the first and closes the
// connection.
describe("streams pipelined on one HTTP/1.1 connection, then reset, on Deno, Bun and Node", () => {
  const serve = ["serve", "--source", "sim", "--sim-exit-rate", "8000", "--port", "0"];
  const servers: [string, string, string[], number][] = [
    ["deno", `${root}node_modules/deno/deno`, ["run", ...DENO_PERMS, "src/cli/run.ts", ...serve], 3],
    ["bun", `${root}node_modules/.bin/bun`, ["src/cli/run.ts", ...serve], 0],
    ["node", process.execPath, ["bin/taskwire.js", ...serve], 6],
  ];
  const gauges = async (url: string): Promise<{ streams: number; listeners: number }> => {
    const text = await (await fetch(`${url}/metrics`)).text();
    const gauge = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(text)?.[1] ?? NaN);
    return { streams: gauge("taskwire_streams"), listeners: gauge("taskwire_listeners") };
  };
  for (const [runtime, bin, args, open] of servers) {
    it(`${runtime}: ${open} of 6 streams open on 3 connections, none left once they are reset`, async () => {
      const server = await spawnServer(bin, args, root);
      const sockets: Socket[] = [];
      try {
        expect(server.runtime).toBe(runtime);
        const { hostname, port } = new URL(server.url);
        for (let i = 0; i < 3; i++) {
          const socket = connect(Number(port), hostname);
          socket.on("error", () => {});
          socket.on("data", () => {});
          socket.write(Buffer.concat([subscribeRequest(server.url), subscribeRequest(server.url)]));
          sockets.push(socket);
        }
        // The metrics render is cached for a second: wait past it for the count the runtime settles on.
        await eventually(async () => (await gauges(server.url)).streams === open, 10_000).catch(() => {});
        await sleep(1500);
        expect((await gauges(server.url)).streams).toBe(open);
        for (const s of sockets) s.resetAndDestroy();
        await eventually(async () => {
          const g = await gauges(server.url);
          return g.streams === 0 && g.listeners === 0;
        }, 10_000).catch(() => {});
        expect(await gauges(server.url)).toEqual({ streams: 0, listeners: 0 });
      } finally {
        for (const s of sockets) s.destroy();
        server.stop();
      }
    }, 40_000);
  }
});
