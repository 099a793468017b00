/** The SDK's JSON conversion and schema exports, and client-side errors thrown at once (never retried). */
import { create, fromJson, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  createTaskwireClient,
  ExitEventSchema,
  exitEventToJson,
  GetInfoResponseSchema,
  LossReason,
  messageToJson,
  SubscribeExitsResponseSchema,
  TaskStatsSchema,
  watchExits,
} from "@taskwire/client";
import { describe, expect, it } from "vitest";
import { createServer as createTcpServer } from "node:net";

// deno-lint-ignore no-explicit-any -- JSON read by path in assertions
type J = Record<string, any>;

const exit = create(ExitEventSchema, {
  seq: 7n,
  cpu: 0,
  event: {
    case: "exit",
    value: {
      pid: 10,
      tgid: 10,
      pidStats: { version: 16, acExitcode: 0, acComm: "", cpuDelayTotal: 2n ** 60n, acUtime: 5n },
      receivedAt: timestampFromMs(1_700_000_000_000),
    },
  },
});

describe("messageToJson / exitEventToJson", () => {
  it("emits every field: zero and false values, null for fields the message does not carry", () => {
    const j = exitEventToJson(exit) as J;
    expect(j.cpu).toBe(0); // protobuf JSON would omit it
    expect(j.seq).toBe("7");
    expect("lost" in j).toBe(false); // a oneof: one member, as protobuf JSON requires
    expect(j.exit.tgid_stats).toBeNull();
    expect(j.exit.pid_stats.ac_exitcode).toBe(0);
    expect(j.exit.pid_stats.ac_comm).toBe("");
    expect(j.exit.pid_stats.irq_delay_max).toBeNull(); // not in this record: null, not missing
    expect(Object.keys(j.exit.pid_stats)).toHaveLength(TaskStatsSchema.fields.length);
    expect(j.exit.received_at).toBe("2023-11-14T22:13:20Z");
    expect("host" in j).toBe(false);
  });

  it("renders 64-bit integers as strings (lossless) or, on request, numbers", () => {
    const s = exitEventToJson(exit) as J;
    expect(s.exit.pid_stats.cpu_delay_total).toBe(String(2n ** 60n));
    const n = exitEventToJson(exit, { int64: "number" }) as J;
    expect(n.exit.pid_stats.cpu_delay_total).toBe(2 ** 60);
    expect(n.seq).toBe(7);
    expect(() => messageToJson(ExitEventSchema, exit, { int64: "bigint" as never })).toThrow(RangeError);
  });

  it("round-trips through fromJson and JSON.stringify (no BigInt left)", () => {
    const text = JSON.stringify(exitEventToJson(exit));
    const back = fromJson(ExitEventSchema, JSON.parse(text));
    expect(toBinary(ExitEventSchema, back)).toEqual(toBinary(ExitEventSchema, exit));
  });

  it("names the loss reason and carries a fleet event's host", () => {
    const lost = create(ExitEventSchema, {
      seq: 9n,
      event: { case: "lost", value: { count: 3n, firstSeq: 7n, lastSeq: 9n, reason: LossReason.SUBSCRIBER_OVERFLOW } },
    });
    const j = exitEventToJson(Object.assign(lost, { host: "db1" })) as J;
    expect(j.host).toBe("db1");
    expect("exit" in j).toBe(false);
    expect(j.lost).toEqual({
      count: "3",
      first_seq: "7",
      last_seq: "9",
      reason: "LOSS_REASON_SUBSCRIBER_OVERFLOW",
      count_unknown: false,
    });
  });

  it("exports the schemas for consumers that decode themselves", () => {
    const msg = create(SubscribeExitsResponseSchema, { events: [exit], listenerId: "x" });
    const j = messageToJson(SubscribeExitsResponseSchema, msg) as J;
    expect(j.heartbeat).toBe(false);
    expect(j.queued).toBe(0);
    expect(j.host).toBeNull();
    expect(j.events[0].cpu).toBe(0);
    const info = messageToJson(GetInfoResponseSchema, create(GetInfoResponseSchema, {})) as J;
    for (const k of ["delayacct", "kernel_drops", "subscriber_drops", "listener_details"]) expect(k in info).toBe(true);
  });
});

describe("watchExits and client-side errors", () => {
  it("throws a value out of range at once, before any connection, and never retries it", async () => {
    // A port that accepts: a retry loop would connect (and hang); the check must come first.
    const accepted: unknown[] = [];
    const srv = createTcpServer((s) => (accepted.push(s), s.destroy()));
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as { port: number }).port;
    try {
      const client = createTaskwireClient(`http://127.0.0.1:${port}`);
      const started = Date.now();
      let reconnects = 0;
      const it = watchExits(client, { cpumask: "0", buffer: 2 ** 32, onReconnect: () => void reconnects++ });
      await expect(it.next()).rejects.toThrow(RangeError);
      expect(Date.now() - started).toBeLessThan(1000);
      expect(reconnects).toBe(0);
      expect(accepted).toHaveLength(0);
      await expect(watchExits(client, { cpumask: "0", maxBatch: 1.5 }).next()).rejects.toThrow(/maxBatch/);
      // A backoff that does not back off (a wait of 0, negative or NaN) would reconnect in a tight loop, for ever.
      for (const backoff of [{ initialMs: -5 }, { initialMs: 0 }, { maxMs: NaN }, { maxAttempts: -1 }]) {
        const bad = watchExits(client, { cpumask: "0", backoff, onReconnect: () => void reconnects++ });
        await expect(bad.next()).rejects.toThrow(/backoff\./);
      }
      expect(reconnects).toBe(0);
      expect(accepted).toHaveLength(0);
    } finally {
      srv.close();
    }
  });
});
