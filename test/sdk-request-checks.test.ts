/**
 * The SDK checks a request's numeric fields against their protobuf types
 * before it is sent (clients/ts/src/_request-checks.ts): a RangeError or
 * TypeError naming the method, the field, its range and the value, instead of
 * connect-es's "[internal] serialize binary: ... invalid uint32: -1".
 */
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Interceptor } from "@connectrpc/connect";
import {
  createTaskwireClient,
  type OverflowPolicy,
  TaskNotFoundError,
  type TaskwireClient,
  watchExits,
} from "@taskwire/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { type Running, startServer } from "./helpers.ts";

let running: Running;
let sent = 0;
const counting: Interceptor = (next) => (req) => {
  sent++;
  return next(req);
};

beforeAll(async () => {
  running = await startServer(createSimSource({ cpus: 2, exitRate: 0 }));
});
afterAll(() => running?.close());

const UINT32 = "an integer in 0..4294967295 \\(uint32\\)";

type Kind = "binary" | "JSON" | "a given transport";

function clientOf(kind: Kind): TaskwireClient {
  const { url } = running;
  if (kind === "a given transport") {
    const transport = createConnectTransport({ baseUrl: url, httpVersion: "1.1", interceptors: [counting] });
    return createTaskwireClient(url, { transport });
  }
  return createTaskwireClient(url, { interceptors: [counting], useBinaryFormat: kind === "binary" });
}

/** The error the first message of a stream throws. */
async function streamError(open: () => AsyncIterable<unknown>): Promise<unknown> {
  try {
    for await (const _ of open()) break;
  } catch (e) {
    return e;
  }
  return undefined;
}

describe.each<Kind>(["binary", "JSON", "a given transport"])(
  "over %s, a numeric field its type cannot hold",
  (kind) => {
    it("is thrown by unary calls before anything is sent, with the method, field, range and value", async () => {
      const client = clientOf(kind);
      sent = 0;
      await expect(client.getPid({ pid: -1 })).rejects.toThrow(
        new RegExp(`^getPid: pid must be ${UINT32}, got -1$`),
      );
      await expect(client.getPid({ pid: -1 })).rejects.toBeInstanceOf(RangeError);
      await expect(client.getTgid({ tgid: 2 ** 32 })).rejects.toThrow(/^getTgid: tgid must be .*, got 4294967296$/);
      await expect(client.register({ cpumask: "0", buffer: 1.5 })).rejects.toThrow(
        /^register: buffer must .*got 1\.5$/,
      );
      await expect(client.getPid({ pid: NaN })).rejects.toBeInstanceOf(RangeError);
      // Not a number at all: a TypeError.
      const notNumber = client.getPid({ pid: "7" as unknown as number });
      await expect(notNumber).rejects.toBeInstanceOf(TypeError);
      await expect(notNumber).rejects.toThrow(new RegExp(`^getPid: pid must be a number, ${UINT32}; got "7"$`));
      expect(sent).toBe(0);
      // In range, it is sent, and answered by the server (whose simulated kernel has no such task).
      await expect(client.getPid({ pid: 4_000_000 })).rejects.toBeInstanceOf(TaskNotFoundError);
      expect(sent).toBe(1);
    });

    it("is thrown by a stream as its first error, nested and repeated fields and enums included", async () => {
      const client = clientOf(kind);
      sent = 0;
      const tgids = await streamError(() => client.subscribeExits({ cpumask: "0", filter: { tgids: [1, -2] } }));
      expect(tgids).toBeInstanceOf(RangeError);
      expect((tgids as Error).message).toMatch(
        new RegExp(`^subscribeExits: filter\\.tgids\\[1\\] must be ${UINT32}, got -2$`),
      );
      const seq = await streamError(() => client.subscribeExits({ listenerId: "x", afterSeq: -1n }));
      expect((seq as Error).message).toBe(
        "subscribeExits: afterSeq must be an integer in 0..18446744073709551615 (uint64), got -1n",
      );
      const policy = await streamError(() =>
        client.subscribeExits({ cpumask: "0", overflow: 2 ** 31 as OverflowPolicy })
      );
      expect((policy as Error).message).toMatch(
        /^subscribeExits: overflow must be an integer in -2147483648\.\.2147483647/,
      );
      expect(sent).toBe(0);
    });
  },
);

describe("watchExits", () => {
  it("names a filter's field out of range before it registers", async () => {
    sent = 0;
    const client = createTaskwireClient(running.url, { interceptors: [counting] });
    const err = await streamError(() => watchExits(client, { cpumask: "0", filter: { uids: [-1] } }));
    expect(err).toBeInstanceOf(RangeError);
    expect((err as Error).message).toMatch(new RegExp(`^watchExits: filter\\.uids\\[0\\] must be ${UINT32}, got -1$`));
    expect(sent).toBe(0);
  });
});

describe("64-bit fields", () => {
  it("take a bigint, a whole number or a decimal string in range", async () => {
    const client = createTaskwireClient(running.url, { retry: false });
    for (const afterSeq of [0n, 0, "0"] as const) {
      // Reaches the server, which answers for the unknown listener: the request was sent.
      const err = await streamError(() => client.subscribeExits({ listenerId: "none", afterSeq: afterSeq as bigint }));
      expect((err as Error).name).toBe("ConnectError");
    }
    const over = await streamError(() => client.subscribeExits({ listenerId: "none", afterSeq: 2n ** 64n }));
    expect(over).toBeInstanceOf(RangeError);
    const bool = await streamError(() =>
      client.subscribeExits({ listenerId: "none", afterSeq: true as unknown as bigint })
    );
    expect((bool as Error).message).toMatch(
      /^subscribeExits: afterSeq must be a bigint, a number or a decimal string, .*; got boolean$/,
    );
  });
});
