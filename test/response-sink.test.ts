/**
 * The Node adapter's response sink (runtime/_response-sink.ts) in use: a
 * binary Connect stream over HTTP/1.1 and h2c sends its batches to the
 * response's own write once its head is out, and its client still reads the
 * opening message first and every seq in order. The module is wrapped to
 * count what the sink did, so a change in connect-es or @hono/node-server
 * that kept streams off the sink (silently slower) fails here, as would one
 * that let a batch overtake the opening message.
 */
import { createConnectTransport } from "@connectrpc/connect-node";
import { createTaskwireClient, type TaskwireClient, watchExits } from "@taskwire/client";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { type Running, startServer } from "./helpers.ts";

const counts = vi.hoisted(() => ({ started: 0, declined: 0, sent: 0 }));

vi.mock("../src/runtime/_response-sink.ts", async (original) => {
  const real = await original<typeof import("../src/runtime/_response-sink.ts")>();
  return {
    ...real,
    responseSink: (res: Parameters<typeof real.responseSink>[0]) => {
      const sink = real.responseSink(res);
      return {
        ...sink,
        start: async () => {
          const ok = await sink.start();
          ok ? counts.started++ : counts.declined++;
          return ok;
        },
        send: (chunk: Uint8Array) => (counts.sent++, sink.send(chunk)),
      };
    },
  };
});

let running: Running | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
  Object.assign(counts, { started: 0, declined: 0, sent: 0 });
});

// Reads `n` events of a stream on CPUs 0-3 (the opening message is checked by watchExits: it must come first and
// name the listener), and the seqs it saw.
async function read(client: TaskwireClient, n: number): Promise<bigint[]> {
  const ctl = new AbortController();
  const seqs: bigint[] = [];
  let opened = false;
  for await (
    const ev of watchExits(client, {
      cpumask: "0-3",
      resume: false,
      signal: ctl.signal,
      onSubscribed: () => void (opened = true),
    })
  ) {
    expect(opened).toBe(true);
    seqs.push(ev.seq);
    if (seqs.length >= n) ctl.abort();
  }
  return seqs;
}

describe("the response sink", () => {
  it.each([
    ["HTTP/1.1", (url: string) => createTaskwireClient(url)],
    [
      "h2c",
      (url: string) =>
        createTaskwireClient(url, { transport: createConnectTransport({ baseUrl: url, httpVersion: "2" }) }),
    ],
  ])("carries a binary Connect stream's batches over %s, in order, after the opening message", async (_, client) => {
    running = await startServer(createSimSource({ cpus: 4, exitRate: 20_000, seed: 3 }));
    const seqs = await read(client(running.url), 5000);
    expect(seqs.length).toBeGreaterThanOrEqual(5000);
    expect(seqs.every((s, i) => i === 0 || s > seqs[i - 1]!)).toBe(true);
    expect(counts).toMatchObject({ started: 1, declined: 0 });
    expect(counts.sent).toBeGreaterThan(10);
  });
});
