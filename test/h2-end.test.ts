/**
 * HTTP/2 sessions ended and streams refused without Node 20's use-after-free (runtime/_h2-end.ts): a GOAWAY queued
 * while a client's HEADERS were read, and a stream reset from inside that read, made nghttp2 go on over a freed
 * stream. Clients sending GetInfo requests fast enough to be refused (past the calls a caller may have under way),
 * or without credentials (each session closed after its answer), crashed `taskwire serve` in most runs of 5 s
 * ("malloc(): mismatching next->prev_size", or SIGSEGV), and so did a client's GOAWAY followed by more HEADERS in one
 * write. Sessions nghttp2 ends for a protocol error while streams wait are let go by a PING (_transport-limits.ts).
 * The servers here are processes of their own, so that a crash is an exit code, not the test runner's death.
 */
import { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { GET_INFO_HEADERS, getInfoStreams, H2_PREFACE, h2Frame } from "../bench/_h2-frames.ts";
import { startChild } from "../bench/_child.ts";
import { endSessions } from "../src/runtime/_h2-end.ts";
import { sleep, spawnServer } from "./helpers.ts";

const root = new URL("..", import.meta.url).pathname;

// `clients` h2c connections from another process (bench/_reset-flood.ts), each writing `perSecond` GetInfo HEADERS a
// second (END_STREAM, never reset) for `seconds`, opened again when closed; how many it sent.
async function request(url: string, o: { clients: number; perSecond: number; seconds: number }): Promise<number> {
  const flooder = `${root}dist/bench/_reset-flood.js`;
  if (!existsSync(flooder)) throw new Error("dist/ is missing: run `npm run build` (npm test does it first)");
  const args = [new URL(url).port, "requests-reconnect", o.clients, o.perSecond, o.seconds].map(String);
  return (await (await startChild(new URL(`file://${flooder}`), args)).finish<{ sent: number }>()).sent;
}

function serve(extra: string[]) {
  const args = ["bin/taskwire.js", "serve", "--source", "sim", "--sim-exit-rate", "2000", "--port", "0", ...extra];
  return spawnServer(process.execPath, args, process.cwd());
}

// /healthz's status once it is 200, asked every 250 ms for up to 15 s (else the last status, or the last error):
// loopback, the attackers' address too, may be refused for 2 s after a flood (its resets went past
// --h2-max-resets-per-second-per-address), and its caller refused (429) while the flood's requests are still counted
// as under way (those of sessions nghttp2 ended are let go by the PING at --idle-timeout-ms, 1 s here).
async function healthz(url: string): Promise<number> {
  const deadline = performance.now() + 15_000;
  for (;; await sleep(250)) {
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5_000) });
      await res.body?.cancel();
      if (res.status === 200 || performance.now() > deadline) return res.status;
    } catch (err) {
      if (performance.now() > deadline) throw err;
    }
  }
}

describe("ending HTTP/2 sessions and refusing streams (Node 20's use-after-free)", () => {
  it(
    "survives clients refused for the calls they have under way, and clients whose sessions are closed after each answer",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "taskwire-h2-end-"));
      // A principal with a token nobody sends: every request comes without credentials (closeAfter ends its session).
      const tokenFile = join(dir, "auth.json");
      writeFileSync(
        tokenFile,
        JSON.stringify({ principals: { alice: { roles: ["read"] } }, tokens: { ["0".repeat(64)]: "alice" } }),
      );
      // Without authentication, and no address ever barred: the refusals alone (REFUSED_STREAM) and the resets
      // they count towards each connection's limit.
      // A short idle timeout: the flood's sessions that nghttp2 ends for going past 100 streams are let go soon after.
      const servers = await Promise.all([
        serve(["--h2-max-resets-per-second-per-address", "2147483647", "--idle-timeout-ms", "1000"]),
        serve(["--token-file", tokenFile, "--idle-timeout-ms", "1000"]),
      ]);
      try {
        const sent = await Promise.all([
          request(servers[0]!.url, { clients: 200, perSecond: 200, seconds: 4 }),
          request(servers[1]!.url, { clients: 50, perSecond: 200, seconds: 4 }),
        ]);
        for (const n of sent) expect(n).toBeGreaterThan(1000);
        await sleep(1000);
        for (const s of servers) {
          expect(s.child.exitCode, "the server process exited (crashed)").toBeNull();
          expect(s.child.signalCode, "the server process was killed by a signal (crashed)").toBeNull();
          expect(await healthz(s.url)).toBe(200);
        }
      } finally {
        for (const s of servers) s.child.kill("SIGKILL");
        rmSync(dir, { recursive: true, force: true });
      }
    },
    60_000,
  );

  it(
    "survives clients that send GOAWAY then more HEADERS in one write (Node closes the session from inside that read)",
    async () => {
      const server = await serve([]);
      try {
        const port = Number(new URL(server.url).port);
        const goaway = Buffer.alloc(8); // last stream id 0, NO_ERROR
        const streams = (first: number, n: number) =>
          Buffer.concat(Array.from({ length: n }, (_, i) => h2Frame(1, 5, first + 2 * i, GET_INFO_HEADERS)));
        const bytes = Buffer.concat([H2_PREFACE, streams(1, 5), h2Frame(7, 0, 0, goaway), streams(11, 50)]);
        // A bare Node 20 HTTP/2 server died within 23-39 such connections, taskwire before the fix within 23.
        for (let i = 0; i < 200 && server.child.exitCode === null && server.child.signalCode === null; i++) {
          await writeAndDrop(port, bytes);
        }
        await sleep(500);
        expect(server.child.signalCode, "the server process was killed by a signal (crashed)").toBeNull();
        expect(server.child.exitCode, "the server process exited (crashed)").toBeNull();
        expect(await healthz(server.url)).toBe(200);
      } finally {
        server.child.kill("SIGKILL");
      }
    },
    60_000,
  );

  it(
    "lets go of sessions nghttp2 ended for a protocol error with streams unanswered: their sockets and calls (PING)",
    async () => {
      const server = await serve(["--idle-timeout-ms", "1000"]);
      try {
        const port = Number(new URL(server.url).port);
        // DATA on stream 3, closed by its END_STREAM: nghttp2's GOAWAY STREAM_CLOSED, its 60 streams still waiting.
        const bytes = Buffer.concat([
          H2_PREFACE,
          getInfoStreams(60, { reset: false }),
          h2Frame(0, 0, 3, Buffer.from("x")),
        ]);
        const before = sockets(server.child.pid!);
        for (let i = 0; i < 10; i++) await writeAndDrop(port, bytes);
        // A PING after 1 s, answered or the session destroyed 1 s later: before, each socket was held for good, and
        // its streams counted as calls under way (600, past the 512 a principal may have: /healthz was refused, 429).
        await sleep(4000);
        expect(sockets(server.child.pid!)).toBeLessThanOrEqual(before);
        expect(await healthz(server.url)).toBe(200);
      } finally {
        server.child.kill("SIGKILL");
      }
    },
    30_000,
  );

  it("ends a session with a GOAWAY alone, lets its open streams finish, then closes it (never session.close())", async () => {
    const server = http2.createServer();
    const end = endSessions(server);
    let closedWhileEnding: boolean | undefined;
    server.on("stream", (stream, headers) => {
      if (headers[":path"] !== "/slow") {
        stream.respond({ ":status": 200 });
        stream.end("ended");
        return end(stream.session!);
      }
      setTimeout(() => {
        closedWhileEnding = stream.session!.closed; // Node's refusal of new streams comes with `closed`
        stream.respond({ ":status": 200 });
        stream.end("slow");
      }, 300);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const session = http2.connect(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
      session.on("error", () => {});
      const goaway = new Promise<[number, number]>((r) => session.once("goaway", (code, last) => r([code, last])));
      const closed = new Promise<void>((r) => session.once("close", () => r()));
      const slow = get(session, "/slow");
      await sleep(50);
      expect(await get(session, "/end")).toEqual([200, "ended"]);
      expect(await goaway).toEqual([http2.constants.NGHTTP2_NO_ERROR, 3]);
      expect(await slow).toEqual([200, "slow"]);
      expect(closedWhileEnding).toBe(false);
      await Promise.race([closed, sleep(5000).then(() => Promise.reject(new Error("the session was never closed")))]);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

function get(session: http2.ClientHttp2Session, path: string): Promise<[number, string]> {
  return new Promise((resolve, reject) => {
    const s = session.request({ ":method": "GET", ":path": path });
    let status = 0;
    let body = "";
    s.on("response", (h) => (status = Number(h[":status"])));
    s.on("error", reject);
    s.on("data", (d: Buffer) => (body += d));
    s.on("end", () => resolve([status, body]));
  });
}

// The sockets `pid` has open (its descriptors that are sockets).
function sockets(pid: number): number {
  const dir = `/proc/${pid}/fd`;
  return readdirSync(dir).filter((fd) => {
    try {
      return readlinkSync(join(dir, fd)).startsWith("socket:");
    } catch {
      return false;
    }
  }).length;
}

// Connects, writes `bytes`, reads and drops the answer for 100 ms, then resets the connection.
function writeAndDrop(port: number, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1", () => s.write(bytes));
    s.on("error", () => {});
    s.resume();
    s.on("close", () => resolve());
    setTimeout(() => s.destroy(), 100);
  });
}
