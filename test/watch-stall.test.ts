/**
 * watchExits in a client process that is stopped (SIGSTOP) while the server
 * keeps sending, then resumed (SIGCONT): the events sent meanwhile wait in
 * its socket, and must be read, not judged lost. On resume libuv runs the
 * timers that fell due before it reads the sockets (epoll_wait returns EINTR
 * after a stop signal), so an idle timer that simply fired would abort the
 * stream with those events unread, and resuming would report them as
 * RETENTION loss once they outnumber the listener's retention.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { connect, createServer as createTcpServer, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { Code, createTaskwireClient, type ExitEvent, watchExits } from "@taskwire/client";
import { afterEach, describe, expect, it } from "vitest";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { eventually, type Running, sleep, startServer, tokenIsPrincipal } from "./helpers.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The child script bundled from its TypeScript (and the SDK's) sources with rolldown: Node runs no TypeScript. */
async function bundledChild(): Promise<string> {
  const { build } = await import("rolldown");
  const out = await build({
    input: fileURLToPath(new URL("./stall/watch-child.ts", import.meta.url)),
    write: false,
    platform: "node",
    external: [/^node:/],
    logLevel: "silent",
    output: { format: "esm", codeSplitting: false },
  });
  const code = out.output[0].code;
  const dir = new URL("../node_modules/.cache/taskwire/", import.meta.url);
  mkdirSync(dir, { recursive: true });
  const file = new URL(`watch-child-${createHash("sha256").update(code).digest("hex").slice(0, 16)}.mjs`, dir);
  writeFileSync(file, code);
  return fileURLToPath(file);
}

/** The child's stdout lines, as they come. */
function lines(child: ChildProcessWithoutNullStreams): string[] {
  const seen: string[] = [];
  let partial = "";
  child.stdout.on("data", (d: Buffer) => {
    const parts = (partial + d.toString()).split("\n");
    partial = parts.pop()!;
    seen.push(...parts);
  });
  return seen;
}

/** What the watch child printed last: exits received, losses by reason, reconnects. */
interface ChildResult {
  exits: number;
  lost: Record<string, number>;
  reconnects: number;
}

/**
 * The watch child on `listenerId`, subscribed and past the first `before` seqs (which the source is made to
 * produce). `finished()` waits for it to exit 0 and gives its last line and its stderr.
 */
async function watchingChild(
  o: { running: Running; source: SimSource; listenerId: string; before: number; total: number; env?: object },
) {
  const script = await bundledChild();
  const child = spawn(process.execPath, [script, o.running.url, o.listenerId, String(o.total)], {
    env: { ...process.env, ...o.env },
  });
  cleanups.push(() => child.kill("SIGKILL"));
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const out = lines(child);
  await eventually(() => out.includes("subscribed"), 20_000);
  o.source.kernel.exitNow(o.before);
  await eventually(() => out.includes(`accounted ${o.before}`), 10_000);
  const finished = async (): Promise<{ result: ChildResult; stderr: string }> => {
    const exited = new Promise<number | null>((r) => child.once("exit", r));
    expect(await Promise.race([exited, sleep(20_000).then(() => "timeout")])).toBe(0);
    return { result: JSON.parse(out[out.length - 1]!) as ChildResult, stderr };
  };
  return { child, out, finished };
}

describe("watchExits across a stopped and resumed client process", () => {
  it("reads what arrived while it was stopped: no reconnect, no RETENTION loss", async () => {
    const source = createSimSource({ cpus: 2, exitRate: 0, seed: 4 }) as SimSource;
    const running: Running = await startServer(source);
    cleanups.push(() => running.close());
    // Retention keeps the last 64 events handed out; far more than that are sent while the client is stopped.
    const { listenerId } = await running.client.register({ cpumask: "0-1", buffer: 64 });
    const before = 20, during = 240;
    const { child, finished } = await watchingChild({ running, source, listenerId, before, total: before + during });

    child.kill("SIGSTOP");
    // Bursts smaller than the queue (64), so none overflows it: every event is handed out, into the socket.
    for (let sent = 0; sent < during; sent += 24) {
      source.kernel.exitNow(24);
      await sleep(15);
    }
    const listener = () => running.server.listeners().find((l) => l.id === listenerId)!;
    await eventually(() => listener().queueDepth === 0, 10_000);
    expect(listener().produced).toBe(before + during);
    await sleep(1200); // stopped for well over the 300 ms idle timeout
    child.kill("SIGCONT");
    const { result, stderr } = await finished();
    expect({ ...result, stderr }).toEqual({ exits: before + during, lost: {}, reconnects: 0, stderr: "" });
    expect(Object.values(listener().lost).every((n) => n === 0)).toBe(true); // none, for any reason
  }, 60_000);
});

describe("watchExits whose stream the server dropped while its process was stopped", () => {
  // A server with a 1 MiB budget and a lease of 2 s. Another principal's stream reads nothing either; the stopped
  // client's stream holds a batch in flight it never reads. Both principals are past their fair shares and the
  // budget past its limit, so after a lease the server drops both streams at their transports (an HTTP/1.1
  // connection closed; an HTTP/2 stream reset with ENHANCE_YOUR_CALM, RESOURCE_EXHAUSTED to the SDK). Resumed
  // within the lease its listener outlives its stream by, the client reads what reached its socket, resumes, and
  // accounts for every seq.
  const protocols = { connect: "Connect over HTTP/1.1", "connect-h2": "Connect over HTTP/2", grpc: "gRPC over HTTP/2" };
  for (const [protocol, name] of Object.entries(protocols)) {
    it(`resumes, and accounts for every seq (${name})`, async () => {
      const source = createSimSource({ cpus: 2, exitRate: 0, seed: 4 }) as SimSource;
      const running: Running = await startServer(source, { leaseMs: 2000 }, {
        memoryBudget: 1024 ** 2,
        authenticator: tokenIsPrincipal,
      });
      cleanups.push(() => running.close());
      const as = (token: string) => createTaskwireClient(running.url, { token });
      // The other principal's stream reads its opening message and nothing more, a batch of one exit at a time:
      // its queue holds its fair share, and its batch in flight is small.
      const other = await as("other").register({ cpumask: "0-1", buffer: 100_000 });
      const otherCtl = new AbortController();
      const otherStream = as("other").subscribeExits({ listenerId: other.listenerId, maxBatch: 1 }, {
        signal: otherCtl.signal,
      })[Symbol.asyncIterator]();
      await otherStream.next();
      cleanups.push(() => otherCtl.abort());
      const { listenerId } = await as("victim").register({ cpumask: "0-1", buffer: 100_000 });
      const before = 20, during = 3000;
      const { child, out, finished } = await watchingChild({
        running,
        source,
        listenerId,
        before,
        total: before + during,
        env: { WATCH_TOKEN: "victim", WATCH_PROTOCOL: protocol },
      });

      child.kill("SIGSTOP");
      for (let sent = 0; sent < during; sent += 100) {
        source.kernel.exitNow(100);
        await sleep(20);
      }
      // Both streams read nothing, past their fair shares (the shared slabs their exits keep alive count too).
      await eventually(() => running.server.stats().stalledStreams === 2, 10_000);
      child.kill("SIGCONT");
      const { result, stderr } = await finished();
      const lost = Object.values(result.lost).reduce((a, b) => a + b, 0);
      console.log(
        `[watch-stall] dropped stream (${protocol}): ${JSON.stringify(result)} ${
          out.filter((l) => l.startsWith("reconnect")).join("; ")
        }`,
      );
      expect(stderr).toBe("");
      expect(result.reconnects).toBeGreaterThanOrEqual(1);
      // Over HTTP/2 the stream was reset with ENHANCE_YOUR_CALM (connect-node reports it as INTERNAL, which the SDK
      // retries as it does a dropped HTTP/1.1 connection).
      if (protocol !== "connect") {
        expect(out).toContain("reconnect 13 Stream closed with error code NGHTTP2_ENHANCE_YOUR_CALM");
      }
      expect(result.exits + lost).toBe(before + during);
    }, 60_000);
  }
});

/** A TCP proxy that can go silent: what the server sends on the connections open now stops reaching the client. */
async function silencingProxy(target: number): Promise<{ url: string; silence(): void; close(): Promise<void> }> {
  const pairs: [Socket, Socket][] = [];
  const server = createTcpServer((c) => {
    const u = connect(target, "127.0.0.1");
    for (const s of [c, u]) s.on("error", () => {});
    c.pipe(u);
    u.pipe(c);
    pairs.push([c, u]);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    silence: () => {
      for (const [c, u] of pairs.splice(0)) u.unpipe(c); // half-open: the client hears nothing more
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe("watchExits's idle watchdog", () => {
  it("still judges a silent stream dead (after its wake-up check) and resumes it without loss", async () => {
    const source = createSimSource({ cpus: 2, exitRate: 0, seed: 4 }) as SimSource;
    const running: Running = await startServer(source);
    cleanups.push(() => running.close());
    const proxy = await silencingProxy(running.listening.port);
    cleanups.push(() => proxy.close());
    const client = createTaskwireClient(proxy.url);
    const { listenerId } = await client.register({ cpumask: "0-1", buffer: 1000 });
    const seen: ExitEvent[] = [];
    const reconnects: { code: Code; at: number }[] = [];
    let silencedAt = 0;
    const ctl = new AbortController();
    cleanups.push(() => ctl.abort());
    const onSubscribed = () => {
      if (seen.length === 0) source.kernel.exitNow(10);
    };
    const onReconnect = (r: { error: { code: Code } }) =>
      reconnects.push({ code: r.error.code, at: Date.now() - silencedAt });
    for await (
      const ev of watchExits(client, { listenerId, heartbeatMs: 100, signal: ctl.signal, onSubscribed, onReconnect })
    ) {
      seen.push(ev);
      if (seen.length === 10) {
        proxy.silence();
        silencedAt = Date.now();
        source.kernel.exitNow(10); // sent into the silent connection: these come again on the resumed stream
      }
      if (seen.length === 20) break;
    }
    expect(seen.map((e) => Number(e.seq))).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(reconnects).toHaveLength(1);
    expect(reconnects[0]!.code).toBe(Code.Unavailable);
    // 300 ms idle, then a 300 ms check: judged dead after about 600 ms (bounded loosely for a loaded machine).
    expect(reconnects[0]!.at).toBeGreaterThanOrEqual(550);
    expect(reconnects[0]!.at).toBeLessThan(5000);
  }, 30_000);
});

describe("watchExits's idle watchdog and a slow consumer", () => {
  it("a consumer that holds an event for longer than the idle timeout does not make the stream dead", async () => {
    const source = createSimSource({ cpus: 2, exitRate: 0, seed: 4 }) as SimSource;
    const running: Running = await startServer(source);
    cleanups.push(() => running.close());
    const { listenerId } = await running.client.register({ cpumask: "0-1", buffer: 1000 });
    const reconnects: Code[] = [];
    const seen: ExitEvent[] = [];
    const onSubscribed = () => {
      if (seen.length === 0) source.kernel.exitNow(1);
    };
    const options = {
      listenerId,
      heartbeatMs: 100,
      maxBatch: 1, // one event a message: the next is read only after the consumer took this one
      onSubscribed,
      onReconnect: (r: { error: { code: Code } }) => reconnects.push(r.error.code),
    };
    for await (const ev of watchExits(running.client, options)) {
      seen.push(ev);
      await sleep(800); // the stream would be judged dead after 300 ms + a 300 ms check of silence
      if (seen.length === 3) break;
      source.kernel.exitNow(1); // the next event, sent only now: on a stream judged dead it would never come
    }
    expect(seen.map((e) => Number(e.seq))).toEqual([1, 2, 3]);
    expect(reconnects).toEqual([]);
  }, 30_000);
});
