/**
 * Typed errors end to end: the server attaches an ErrorDetail (reason +
 * values) to every domain error; the SDK turns it into the subclass for that
 * reason over Connect, gRPC-Web and gRPC alike, without losing the code.
 */
import { createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import {
  Code, ConnectError, createTaskwireClient, ErrorReason, InvalidCpumaskError, InvalidRequestError, LimitExceededError,
  ListenerNotFoundError, SeqOutOfRangeError, StreamTakenOverError, TaskNotFoundError, TaskwireError, toTaskwireError,
  type TaskwireClient,
} from "@taskwire/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { eventually, startServer, type Running } from "./helpers.ts";

let running: Running;
beforeAll(async () => {
  running = await startServer(createSimSource({ cpus: 8, exitRate: 200, seed: 3 }), { maxListeners: 3 });
});
afterAll(() => running.close());

async function failure(p: Promise<unknown> | (() => Promise<unknown>)): Promise<unknown> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (err) {
    return err;
  }
  throw new Error("expected the call to fail");
}

const drain = (client: TaskwireClient, req: Parameters<TaskwireClient["subscribeExits"]>[0]) => async () => {
  for await (const _ of client.subscribeExits(req)) { /* drain */ }
};

const transports: [string, () => TaskwireClient][] = [
  ["Connect (the SDK's default)", () => running.client],
  ["gRPC over h2c (a transport of your own)", () => createTaskwireClient(running.url, { transport: createGrpcTransport({ baseUrl: running.url }) })],
  ["gRPC-Web", () => createTaskwireClient(running.url, { transport: createGrpcWebTransport({ baseUrl: running.url, httpVersion: "1.1" }) })],
];

describe.each(transports)("typed errors over %s", (_name, make) => {
  it("each failure is its reason's class, still a ConnectError with the right code", async () => {
    const client = make();
    const task = await failure(client.getPid({ pid: 4_000_000 }));
    expect(task).toBeInstanceOf(TaskNotFoundError);
    expect(task).toBeInstanceOf(ConnectError);
    expect(task).toMatchObject({ code: Code.NotFound, reason: ErrorReason.TASK_NOT_FOUND, pid: 4_000_000, tgid: undefined });
    expect((task as ConnectError).rawMessage).toBe("no live task with pid 4000000");
    expect(await failure(client.getTgid({ tgid: 4_000_001 }))).toMatchObject({ tgid: 4_000_001, reason: ErrorReason.TASK_NOT_FOUND });

    const mask = await failure(client.register({ cpumask: "0-99" }));
    expect(mask).toBeInstanceOf(InvalidCpumaskError);
    expect(mask).toMatchObject({ code: Code.InvalidArgument, values: { errno: "EINVAL" } });
    expect(await failure(client.getPid({ pid: 0 }))).toBeInstanceOf(InvalidRequestError);

    const listener = await failure(client.deregister({ listenerId: "gone", cpumask: "1" }));
    expect(listener).toBeInstanceOf(ListenerNotFoundError);
    expect(listener).not.toBeInstanceOf(TaskNotFoundError);
    expect(listener).toMatchObject({ code: Code.NotFound, listenerId: "gone" });
  });

  it("stream failures are typed too: unknown listener, resume past the end, takeover", async () => {
    const client = make();
    expect(await failure(drain(client, { listenerId: "missing" }))).toBeInstanceOf(ListenerNotFoundError);
    const reg = await client.register({ cpumask: "0-7" });
    try {
      const past = await failure(drain(client, { listenerId: reg.listenerId, afterSeq: 1_000_000n }));
      expect(past).toBeInstanceOf(SeqOutOfRangeError);
      expect(past).toMatchObject({ code: Code.OutOfRange });
      const first = failure(drain(client, { listenerId: reg.listenerId }));
      await eventually(async () => (await client.getInfo({ listeners: true })).listenerDetails.some((l) => l.streaming));
      const ctl = new AbortController();
      const second = client.subscribeExits({ listenerId: reg.listenerId }, { signal: ctl.signal })[Symbol.asyncIterator]();
      await second.next();
      const taken = await first;
      expect(taken).toBeInstanceOf(StreamTakenOverError);
      expect(taken).toMatchObject({ code: Code.Aborted, reason: ErrorReason.STREAM_TAKEN_OVER });
      ctl.abort();
    } finally {
      await client.deregister({ listenerId: reg.listenerId, cpumask: "all" }).catch(() => {});
    }
  });
});

describe("typed errors: the edges", () => {
  it("RESOURCE_EXHAUSTED past the listener limit is LimitExceededError", async () => {
    const ids = [];
    try {
      let err: unknown;
      for (let i = 0; i < 4 && err === undefined; i++) {
        try {
          ids.push((await running.client.register({ cpumask: "0" })).listenerId);
        } catch (e) {
          err = e;
        }
      }
      expect(err).toBeInstanceOf(LimitExceededError);
      expect(err).toMatchObject({ code: Code.ResourceExhausted });
    } finally {
      for (const listenerId of ids) await running.client.deregister({ listenerId, cpumask: "all" });
    }
  });

  it("a ConnectError without taskwire's detail stays as it is, and is no typed error", () => {
    const plain = new ConnectError("connection refused", Code.Unavailable);
    expect(toTaskwireError(plain)).toBe(plain);
    expect(plain).not.toBeInstanceOf(TaskwireError);
    expect(plain).not.toBeInstanceOf(TaskNotFoundError);
    const other = new Error("x");
    expect(toTaskwireError(other)).toBe(other);
  });
});
