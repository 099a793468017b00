/**
 * Refusals for the moment: a unary call over the call rate (or over its calls
 * under way, see calls-in-flight.test.ts) changed nothing, and its refusal
 * says when the same call may pass (ErrorDetail metadata retry_after_ms). The
 * SDK sends such calls again, within its policy, the call's timeout and its
 * signal; watchExits waits at least that long before it reconnects. Limits
 * the caller must act on carry no retry_after_ms and are thrown at once.
 */
import { Code, ConnectError, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import {
  createTaskwireClient,
  ErrorDetailSchema,
  ErrorReason,
  LimitExceededError,
  type Reconnecting,
  TaskStats,
  watchExits,
} from "@taskwire/client";
import { afterEach, describe, expect, it } from "vitest";
import type { AdmissionLimits } from "../src/core/admission.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import type { CgroupStats } from "../src/sources/source.ts";
import { type Running, startServer } from "./helpers.ts";

let running: Running | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

async function serve(admission: Partial<AdmissionLimits>, maxListenersPerPrincipal = 64): Promise<string> {
  running = await startServer(createSimSource({ cpus: 2, exitRate: 0 }), { maxListenersPerPrincipal }, { admission });
  return running.url;
}

/** An interceptor counting the requests the client sends (each retry is one). */
function counting(): { sent: () => number; interceptor: Interceptor } {
  let n = 0;
  return { sent: () => n, interceptor: (next) => (req) => (n++, next(req)) };
}

const caught = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);

describe("a refusal for the moment", () => {
  it("says when to retry: the call rate's the time until its bucket holds a call again; a listener limit's nothing", async () => {
    const url = await serve({ callsPerSecond: 4, callBurst: 1 }, 1);
    const once = createTaskwireClient(url, { retry: false });
    await once.getInfo({});
    const err = await caught(once.getInfo({}));
    expect(err).toBeInstanceOf(LimitExceededError);
    expect((err as LimitExceededError).rawMessage).toMatch(/call rate of 4\/s/);
    const after = (err as LimitExceededError).retryAfterMs!;
    expect(after).toBeGreaterThan(0);
    expect(after).toBeLessThanOrEqual(250); // a call every 250 ms

    await new Promise((r) => setTimeout(r, after + 10));
    await once.register({ cpumask: "0" });
    await new Promise((r) => setTimeout(r, 260));
    const second = await caught(once.register({ cpumask: "1" }));
    expect(second).toBeInstanceOf(LimitExceededError);
    expect((second as LimitExceededError).rawMessage).toMatch(/--max-listeners-per-principal/);
    expect((second as LimitExceededError).retryAfterMs).toBeUndefined();
  });

  it("is retried by the SDK after the time asked, and the call passes; a retried Register makes one listener", async () => {
    const url = await serve({ callsPerSecond: 5, callBurst: 1 });
    const { sent, interceptor } = counting();
    const client = createTaskwireClient(url, { interceptors: [interceptor] });
    const t0 = Date.now();
    for (let i = 0; i < 3; i++) await client.getInfo({});
    expect(sent()).toBeGreaterThan(3); // refused at least once, and sent again
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300); // two refills of 200 ms, waited for
    const { listenerId } = await client.register({ cpumask: "0-1" });
    expect(running!.server.listeners().map((l) => l.id)).toEqual([listenerId]);
  });

  it("is thrown after maxRetries, having waited at most maxDelayMs", async () => {
    const url = await serve({ callsPerSecond: 1, callBurst: 1 });
    const { sent, interceptor } = counting();
    const client = createTaskwireClient(url, { interceptors: [interceptor], retry: { maxRetries: 1, maxDelayMs: 50 } });
    await client.getInfo({});
    const t0 = Date.now();
    expect(await caught(client.getInfo({}))).toBeInstanceOf(LimitExceededError);
    expect(sent()).toBe(3); // the first call, and the refused one twice
    expect(Date.now() - t0).toBeLessThan(900); // waited at most maxDelayMs (and a quarter), not the second asked
    expect(() => createTaskwireClient(url, { retry: { maxRetries: -1 } })).toThrow(/retry.maxRetries must be/);
  });

  it("is thrown at once when the wait asked for would pass the call's timeoutMs", async () => {
    const url = await serve({ callsPerSecond: 1, callBurst: 1 });
    const { sent, interceptor } = counting();
    const client = createTaskwireClient(url, { interceptors: [interceptor] });
    await client.getInfo({}); // the bucket is empty for a second
    const t0 = Date.now();
    expect(await caught(client.getInfo({}, { timeoutMs: 200 }))).toBeInstanceOf(LimitExceededError);
    expect(sent()).toBe(2);
    expect(Date.now() - t0).toBeLessThan(200);
  });

  it("ends its wait when the call's signal aborts (CANCELED)", async () => {
    const url = await serve({ callsPerSecond: 1, callBurst: 1 });
    const client = createTaskwireClient(url);
    await client.getInfo({}); // the bucket is empty for a second
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 100);
    const t0 = Date.now();
    const aborted = await caught(client.getInfo({}, { signal: ctl.signal }));
    expect(aborted).toBeInstanceOf(ConnectError);
    expect((aborted as ConnectError).code).toBe(Code.Canceled);
    expect(Date.now() - t0).toBeLessThan(700);
  });

  it("holds watchExits back for at least the time asked when the server's streams are all open", async () => {
    const url = await serve({ maxStreams: 1 });
    const client = createTaskwireClient(url);
    const first = new AbortController();
    const holding = watchExits(client, { cpumask: "0", resume: false, signal: first.signal })[Symbol.asyncIterator]();
    const pending = holding.next().catch(() => undefined); // the stream opens; no exits come (the sim rate is 0)
    await new Promise<void>((r) => {
      const poll = () => (running!.server.stats().streams === 1 ? r() : setTimeout(poll, 10));
      poll();
    });
    const waits: Reconnecting[] = [];
    const second = new AbortController();
    let subscribed = false;
    const watching = (async () => {
      for await (
        const _ of watchExits(client, {
          cpumask: "1",
          signal: second.signal,
          onReconnect: (r) => {
            waits.push(r);
            first.abort(); // the first stream ends: the next attempt finds room
          },
          onSubscribed: () => {
            subscribed = true;
            second.abort();
          },
        })
      );
    })();
    await watching;
    await pending;
    expect(subscribed).toBe(true);
    expect(waits.length).toBeGreaterThanOrEqual(1);
    expect(waits[0]!.error).toBeInstanceOf(ConnectError);
    expect(waits[0]!.error.rawMessage).toMatch(/--max-streams/);
    expect(waits[0]!.delayMs).toBeGreaterThanOrEqual(1000);
  });
});

/** A refusal for the moment as a server (or a proxy) could send it, asking for `retryAfterMs`. */
function refusal(retryAfterMs: string): ConnectError {
  const detail = { reason: ErrorReason.LIMIT_EXCEEDED, metadata: { retry_after_ms: retryAfterMs } };
  return new ConnectError("refused for the moment", Code.ResourceExhausted, undefined, [
    { desc: ErrorDetailSchema, value: detail },
  ]);
}

/** A client of a hostile in-memory server that refuses every call, saying when to retry; counts the calls. */
function refusingServer(retryAfterMs: string) {
  const calls = { getInfo: [] as number[], register: 0, subscribeExits: 0 };
  const transport = createRouterTransport(({ service }) =>
    service(TaskStats, {
      getInfo() {
        calls.getInfo.push(Date.now());
        throw refusal(retryAfterMs);
      },
      register() {
        calls.register++;
        throw refusal(retryAfterMs);
      },
      // deno-lint-ignore require-yield
      async *subscribeExits() {
        calls.subscribeExits++;
        throw refusal(retryAfterMs);
      },
    })
  );
  return { calls, client: createTaskwireClient("http://unused.invalid", { transport }) };
}

describe("what a server asks for, bounded by the client", () => {
  it("unary retries wait the time asked, doubling, and never past maxDelayMs", async () => {
    const { calls, client } = refusingServer("20");
    expect(await caught(client.getInfo({}))).toBeInstanceOf(LimitExceededError);
    const gaps = calls.getInfo.slice(1).map((t, i) => t - calls.getInfo[i]!);
    expect(gaps).toHaveLength(3);
    gaps.forEach((gap, i) => expect(gap, `retry ${i + 1}`).toBeGreaterThanOrEqual(20 * 2 ** i - 2));

    const hostile = refusingServer("999999999");
    const capped = createTaskwireClient("http://unused.invalid", {
      transport: createRouterTransport(({ service }) =>
        service(TaskStats, {
          getInfo() {
            hostile.calls.getInfo.push(Date.now());
            throw refusal("999999999");
          },
        })
      ),
      retry: { maxRetries: 2, maxDelayMs: 30 },
    });
    const t0 = Date.now();
    expect(await caught(capped.getInfo({}))).toBeInstanceOf(LimitExceededError);
    expect(Date.now() - t0).toBeLessThan(1000); // two waits of at most 30 ms, not 11 days
  });

  it("watchExits waits at most its backoff's maxMs, however long the server asks", async () => {
    const { client } = refusingServer("999999999");
    const waits: number[] = [];
    const err = await caught((async () => {
      for await (
        const _ of watchExits(client, {
          listenerId: "l1",
          backoff: { initialMs: 10, maxMs: 100, maxAttempts: 2 },
          onReconnect: (r) => waits.push(r.delayMs),
        })
      );
    })());
    expect(err).toBeInstanceOf(LimitExceededError);
    expect(waits).toHaveLength(2);
    for (const w of waits) expect(w).toBeLessThanOrEqual(100);
  });

  it("watchExits ends at once when onReconnect aborts its signal, without the wait asked for", async () => {
    const { client } = refusingServer("4000");
    const ctl = new AbortController();
    const t0 = Date.now();
    for await (
      const _ of watchExits(client, {
        listenerId: "l1",
        signal: ctl.signal,
        backoff: { maxMs: 10_000 },
        onReconnect: () => ctl.abort(),
      })
    );
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it("watchExits sends its Register once per attempt: the client's retries do not multiply its own", async () => {
    const { calls, client } = refusingServer("5");
    const err = await caught((async () => {
      for await (const _ of watchExits(client, { cpumask: "0", backoff: { initialMs: 1, maxAttempts: 1 } }));
    })());
    expect(err).toBeInstanceOf(LimitExceededError);
    expect(calls.register).toBe(2); // the first attempt and the watch's one retry, each sent once
  });
});

describe("GetCgroupStats refused for the moment", () => {
  it("does not spend a call of the caller's rate (the SDK's retries would, each)", async () => {
    const sim = createSimSource({ cpus: 2, exitRate: 0 });
    let finish!: () => void;
    const counting = new Promise<void>((r) => (finish = r));
    const stats: CgroupStats = {
      path: "/sys/fs/cgroup/a",
      method: "procfs",
      sleeping: 1,
      running: 0,
      stopped: 0,
      uninterruptible: 0,
    };
    // A count that lasts until the test ends it: the server's one count in flight.
    const source = Object.assign(sim, { cgroupStats: async () => (await counting, stats) });
    running = await startServer(source, {}, {
      admission: { callsPerSecond: 1, callBurst: 3 },
      cgroupCalls: { maxConcurrent: 1, maxPerPrincipal: 2 },
    });
    const once = createTaskwireClient(running.url, { retry: false });
    const first = caught(once.getCgroupStats({ path: "/sys/fs/cgroup/a" })); // one call of the rate
    await new Promise((r) => setTimeout(r, 50));
    for (let i = 0; i < 3; i++) {
      const err = await caught(once.getCgroupStats({ path: "/sys/fs/cgroup/b" }));
      expect((err as LimitExceededError).rawMessage).toMatch(/--cgroup-max-concurrent/);
    }
    // The three refusals took none of the burst: two calls of it are left.
    await once.getInfo({});
    await once.getInfo({});
    finish();
    expect(await first).toBeUndefined();
  });
});
