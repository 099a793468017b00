/** Resuming listeners: server-side replay from retention, and the SDK's reconnecting watchExits. */
import { connect, createServer as createTcpServer, type Server, type Socket } from "node:net";
import { toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, createTaskwireClient, type ExitEvent, LossReason, watchExits } from "@taskwire/client";
import { ExitEventSchema } from "../clients/ts/src/gen/taskwire/v1/taskstats_pb.ts";
import { afterEach, describe, expect, it } from "vitest";
import { type Listening, listenNode } from "../src/runtime/node.ts";
import { createServer } from "../src/server/server.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { eventually, type Running, startServer } from "./helpers.ts";

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(limits = {}) {
  const source = createSimSource({ cpus: 4, exitRate: 0, seed: 5 }) as SimSource;
  const running: Running = await startServer(source, limits);
  cleanups.push(() => running.close());
  return { ...running, source };
}

/** Reads a stream's events until `until` says stop (then aborts it). */
async function read(
  stream: AsyncIterable<{ events: ExitEvent[] }>,
  ctl: AbortController,
  until: (seen: ExitEvent[]) => boolean,
) {
  const seen: ExitEvent[] = [];
  try {
    for await (const m of stream) {
      seen.push(...m.events);
      if (until(seen)) break;
    }
  } finally {
    ctl.abort();
  }
  return seen;
}

const seqs = (evs: ExitEvent[]) => evs.map((e) => Number(e.seq));
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

describe("SubscribeExits{listener_id, after_seq}", () => {
  it("replays what the client missed from retention, with no gap", async () => {
    const { client, source } = await start();
    const { listenerId } = await client.register({ cpumask: "0-3", buffer: 1000 });
    source.kernel.exitNow(500);
    const ctl1 = new AbortController();
    const first = await read(
      client.subscribeExits({ listenerId, maxBatch: 50 }, { signal: ctl1.signal }),
      ctl1,
      (s) => s.length >= 100,
    );
    const last = Number(first[first.length - 1]!.seq);
    expect(seqs(first)).toEqual(range(1, last));
    source.kernel.exitNow(200);
    const ctl2 = new AbortController();
    const second = await read(
      client.subscribeExits({ listenerId, afterSeq: BigInt(last) }, { signal: ctl2.signal }),
      ctl2,
      (s) => s.length >= 700 - last,
    );
    expect(seqs(second)).toEqual(range(last + 1, 700)); // nothing lost, nothing twice
    expect(second.every((e) => e.event.case === "exit")).toBe(true);
  });

  it("a replay carries exactly the events first sent: binary as they were, JSON with a field mask projected", async () => {
    const { client, source, url } = await start();
    const { listenerId } = await client.register({ cpumask: "0-3", buffer: 1000 });
    source.kernel.exitNow(300);
    const ctl1 = new AbortController();
    const first = await read(
      client.subscribeExits({ listenerId }, { signal: ctl1.signal }),
      ctl1,
      (s) => s.length >= 300,
    );
    expect(first.some((e) => e.event.case === "exit" && e.event.value.tgidStats !== undefined)).toBe(true);
    const ctl2 = new AbortController();
    const again = await read(
      client.subscribeExits({ listenerId, afterSeq: 100n }, { signal: ctl2.signal }),
      ctl2,
      (s) => s.length >= 200,
    );
    const json = (evs: ExitEvent[]) => evs.map((e) => toJson(ExitEventSchema, e));
    expect(json(again)).toEqual(json(first.slice(100)));
    const jsonClient = createTaskwireClient(url, { useBinaryFormat: false });
    const ctl3 = new AbortController();
    const masked = await read(
      jsonClient.subscribeExits({ listenerId, afterSeq: 250n, fields: ["ac_comm", "ac_pid"] }, { signal: ctl3.signal }),
      ctl3,
      (s) => s.length >= 50,
    );
    expect(
      masked.map((e) =>
        e.event.case === "exit" ? [Number(e.seq), e.event.value.pid, e.event.value.pidStats] : undefined
      ),
    ).toEqual(
      first.slice(250).map((e) =>
        e.event.case === "exit"
          ? [Number(e.seq), e.event.value.pid, {
            $typeName: "taskwire.kernel.v1.TaskStats",
            acComm: e.event.value.pidStats!.acComm,
            acPid: e.event.value.pidStats!.acPid,
          }]
          : undefined
      ),
    );
  });

  it("reports what is no longer retained as Lost(RETENTION) with the exact range", async () => {
    const { client, source } = await start();
    const { listenerId } = await client.register({ cpumask: "0-3", buffer: 50 });
    const ctl1 = new AbortController();
    let produced = 0;
    const first = await read(client.subscribeExits({ listenerId }, { signal: ctl1.signal }), ctl1, (s) => {
      if (produced < 500) {
        source.kernel.exitNow(25);
        produced += 25;
      } // feed slower than the queue fills
      return s.length >= 500;
    });
    expect(seqs(first)).toEqual(range(1, 500));
    // Pretend only the first 10 arrived: 11..450 were handed out and are no longer retained (retention = 50).
    const ctl2 = new AbortController();
    const again = await read(
      client.subscribeExits({ listenerId, afterSeq: 10n }, { signal: ctl2.signal }),
      ctl2,
      (s) => s.length >= 51,
    );
    expect(again[0]!.event.case).toBe("lost");
    const lost = again[0]!.event.value as { count: bigint; firstSeq: bigint; lastSeq: bigint; reason: LossReason };
    expect([lost.firstSeq, lost.lastSeq, lost.count, lost.reason]).toEqual([11n, 450n, 440n, LossReason.RETENTION]);
    expect(seqs(again.slice(1))).toEqual(range(451, 500));
    const info = await client.getInfo({ listeners: true });
    expect(info.listenerDetails[0]!.lostRetention).toBe(440n);
  });

  it("refuses after_seq beyond what was sent (OUT_OF_RANGE) and after_seq without listener_id", async () => {
    const { client } = await start();
    const { listenerId } = await client.register({ cpumask: "0" });
    const drain = async (req: object) => {
      for await (const _ of client.subscribeExits(req)) { /* drain */ }
    };
    const err = await drain({ listenerId, afterSeq: 5n }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.OutOfRange);
    expect(err?.rawMessage).toMatch(/beyond the last event this listener sent \(0\)/);
    expect(await drain({ cpumask: "0", afterSeq: 5n }).then(() => undefined, (e: unknown) => ConnectError.from(e).code))
      .toBe(Code.InvalidArgument);
  });
});

/** A TCP proxy whose connections the test can cut, to drop streams mid-flight. */
async function proxy(target: number): Promise<{ url: string; cut(): void; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createTcpServer((c) => {
    const u = connect(target, "127.0.0.1");
    for (const s of [c, u]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {});
    }
    c.pipe(u).pipe(c);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    cut: () => {
      for (const s of sockets) s.destroy();
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

describe("watchExits reconnects and resumes", () => {
  it("a dropped connection is resumed: every seq exactly once, no loss", async () => {
    const { source, listening, server } = await start();
    const p = await proxy(listening.port);
    cleanups.push(() => p.close());
    const client = createTaskwireClient(p.url);
    const seen: ExitEvent[] = [];
    const reconnects: Code[] = [];
    let cuts = 0;
    const produceFirst = () => {
      if (seen.length === 0) source.kernel.exitNow(300);
    };
    for await (
      const ev of watchExits(client, {
        cpumask: "0-3",
        backoff: { initialMs: 20 },
        onSubscribed: produceFirst,
        onReconnect: (r) => reconnects.push(r.error.code),
      })
    ) {
      seen.push(ev);
      if (seen.length % 300 === 0) source.kernel.exitNow(300);
      if (seen.length % 250 === 0 && cuts < 3) {
        cuts++;
        p.cut(); // both directions of every proxied connection die mid-stream
      }
      if (seen.length >= 1200) break;
    }
    expect(reconnects).toHaveLength(3);
    expect(seen.every((e) => e.event.case === "exit")).toBe(true);
    expect(seqs(seen)).toEqual(range(1, 1200));
    await eventually(() => server.stats().listeners === 0); // the SDK deregistered its listener
  });

  it("deregisters the listener it made as the iteration ends, and hands onRelease that answer to await", async () => {
    const { client, server, source } = await start();
    const released: Promise<void>[] = [];
    for (const onRelease of [(p: Promise<void>) => void released.push(p), undefined]) {
      let n = 0;
      for await (
        const _ of watchExits(client, {
          cpumask: "0-3",
          onSubscribed: () => source.kernel.exitNow(20),
          ...(onRelease && { onRelease }),
        })
      ) if (++n === 5) break;
      if (onRelease !== undefined) {
        expect(released).toHaveLength(1);
        await released[0];
        expect(server.stats().listeners).toBe(0); // gone once the promise settles, not at its lease
      }
      await eventually(() => server.stats().listeners === 0); // without onRelease too
    }
  });

  it("a server restart is reported as Lost(RESTART) with an unknown count, then events go on", async () => {
    const first = await start();
    const client = createTaskwireClient(first.url);
    const seen: ExitEvent[] = [];
    let second: SimSource | undefined;
    const produce = () => (second ?? first.source).kernel.exitNow(second ? 2 : 10);
    for await (
      const ev of watchExits(client, { cpumask: "0-3", backoff: { initialMs: 20, maxMs: 200 }, onSubscribed: produce })
    ) {
      seen.push(ev);
      if (seen.length === 10) {
        await first.listening.close(); // the server goes away, and its listeners with it
        second = createSimSource({ cpus: 4, exitRate: 0, seed: 6 }) as SimSource;
        const listening: Listening = await listenNode(createServer({ source: second }), { port: first.listening.port });
        cleanups.push(() => listening.close());
      }
      if (seen.length === 13) break;
    }
    expect(seqs(seen.slice(0, 10))).toEqual(range(1, 10));
    expect(seen[10]!.event.case).toBe("lost");
    expect(seen[10]!.event.value).toMatchObject({
      reason: LossReason.RESTART,
      countUnknown: true,
      firstSeq: 11n,
      count: 0n,
    });
    expect(seqs(seen.slice(11))).toEqual([1, 2]); // the new listener numbers from 1
  });
});
