/**
 * A rejected request changes nothing: every method validates the whole
 * request before it acts. For each rejected shape, the server's listeners
 * (ids, CPUs, queues, streams) are the same after as before, no ephemeral
 * listener is left behind, and a stream already reading the listener keeps
 * getting every event.
 */
import { Code, ConnectError, type OverflowPolicy, type SubscribeExitsResponse } from "@taskwire/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { eventually, type Running, sleep, startServer } from "./helpers.ts";

let running: Running;
let source: SimSource;
let owned: string; // a registered listener on CPUs 0-3 whose owner streams it
let ownerEvents = 0;
const ownerCtl = new AbortController();

beforeAll(async () => {
  source = createSimSource({ cpus: 4, exitRate: 0, seed: 3 }) as SimSource;
  running = await startServer(source);
  owned = (await running.client.register({ cpumask: "0-3" })).listenerId;
  const stream = running.client.subscribeExits({ listenerId: owned }, { signal: ownerCtl.signal });
  void (async () => {
    try {
      for await (const m of stream as AsyncIterable<SubscribeExitsResponse>) ownerEvents += m.events.length;
    } catch {
      // aborted at the end
    }
  })();
  await eventually(() => running.server.stats().streams === 1);
});
afterAll(async () => {
  ownerCtl.abort();
  await running.close();
});

const snapshot = () => ({ stats: running.server.stats(), listeners: running.server.listeners() });

// The server's state once the last case's exits are let go: the owner's client has them as soon as they are
// written, but their batch's charge is released a little later, and that must not be read as the rejected request's
// doing. Two snapshots 20 ms apart that agree.
async function settled(): Promise<ReturnType<typeof snapshot>> {
  let last = JSON.stringify(snapshot());
  for (;;) {
    await sleep(20);
    const now = snapshot();
    if (JSON.stringify(now) === last) return now;
    last = JSON.stringify(now);
  }
}

async function rejected(call: () => Promise<unknown>): Promise<ConnectError> {
  const err = await call().then(() => undefined, (e: unknown) => ConnectError.from(e));
  if (err === undefined) throw new Error("the request was accepted");
  return err;
}

async function drain(req: Parameters<Running["client"]["subscribeExits"]>[0]): Promise<void> {
  for await (const _ of running.client.subscribeExits(req)) break;
}

// A Connect unary call in JSON whose timeout is already up (connect-timeout-ms: 0), as curl or a client whose own
// deadline ran out sends it; rejects with the ConnectError of the answer.
async function pastDeadline(method: string, body: object): Promise<unknown> {
  const res = await fetch(`${running.url}/taskwire.v1.TaskStats/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-timeout-ms": "0" },
    body: JSON.stringify(body),
  });
  const answer = await res.json() as { code?: string; message?: string };
  if (res.ok) return answer;
  const code = Object.entries(Code).find(([k]) =>
    k.replace(/[A-Z]/g, (c, i) => (i ? "_" : "") + c.toLowerCase()) === answer.code
  )?.[1];
  throw new ConnectError(answer.message ?? "", code as Code);
}

const HUGE = 2n ** 64n - 1n;
const cases: [string, Code, () => Promise<unknown>][] = [
  ["Register with an empty cpumask", Code.InvalidArgument, () => running.client.register({ cpumask: "" })],
  ["Register naming an impossible CPU", Code.InvalidArgument, () => running.client.register({ cpumask: "0-99" })],
  [
    "Register adding CPUs to an unknown listener",
    Code.NotFound,
    () => running.client.register({ cpumask: "0", listenerId: "nope" }),
  ],
  [
    "Register with an unknown overflow policy",
    Code.InvalidArgument,
    () => running.client.register({ cpumask: "0", overflow: 99 as OverflowPolicy }),
  ],
  [
    "Register on an owned listener with a bad cpumask",
    Code.InvalidArgument,
    () => running.client.register({ cpumask: "0,x", listenerId: owned }),
  ],
  ["Deregister without a listener id", Code.InvalidArgument, () => running.client.deregister({ cpumask: "0" })],
  [
    "Deregister with a bad cpumask",
    Code.InvalidArgument,
    () => running.client.deregister({ listenerId: owned, cpumask: "3-1" }),
  ],
  [
    "Deregister of an unknown listener",
    Code.NotFound,
    () => running.client.deregister({ listenerId: "nope", cpumask: "0" }),
  ],
  ["SubscribeExits with neither listener_id nor cpumask", Code.InvalidArgument, () => drain({})],
  [
    "SubscribeExits with both listener_id and cpumask",
    Code.InvalidArgument,
    () => drain({ listenerId: owned, cpumask: "0" }),
  ],
  ["SubscribeExits{cpumask, after_seq}", Code.InvalidArgument, () => drain({ cpumask: "0", afterSeq: 5n })],
  ["SubscribeExits with a bad cpumask", Code.InvalidArgument, () => drain({ cpumask: "0-99" })],
  [
    "SubscribeExits with an unknown field in the mask",
    Code.InvalidArgument,
    () => drain({ cpumask: "0", fields: ["no_such"] }),
  ],
  ["SubscribeExits with a heartbeat out of range", Code.InvalidArgument, () => drain({ cpumask: "0", heartbeatMs: 5 })],
  [
    "SubscribeExits with an unknown overflow policy",
    Code.InvalidArgument,
    () => drain({ cpumask: "0", overflow: 99 as OverflowPolicy }),
  ],
  ["SubscribeExits of an unknown listener", Code.NotFound, () => drain({ listenerId: "nope" })],
  [
    "SubscribeExits on an owned listener with a filter and an after_seq never sent",
    Code.OutOfRange,
    () => drain({ listenerId: owned, afterSeq: HUGE, filter: { commPrefix: "zzz" } }),
  ],
  [
    "SubscribeExits on an owned listener with a filter and a bad heartbeat",
    Code.InvalidArgument,
    () => drain({ listenerId: owned, heartbeatMs: 1, filter: { commPrefix: "zzz" } }),
  ],
  ["Register whose deadline is already up", Code.DeadlineExceeded, () => pastDeadline("Register", { cpumask: "0" })],
  [
    "Register adding CPUs to an owned listener, its deadline already up",
    Code.DeadlineExceeded,
    () => pastDeadline("Register", { cpumask: "0", listenerId: owned }),
  ],
  [
    "Deregister whose deadline is already up",
    Code.DeadlineExceeded,
    () => pastDeadline("Deregister", { cpumask: "0", listenerId: owned }),
  ],
  ["GetInfo whose deadline is already up", Code.DeadlineExceeded, () => pastDeadline("GetInfo", {})],
];

describe("a rejected request changes nothing", () => {
  it.each(cases)("%s", async (_name, code, call) => {
    const before = await settled();
    const err = await rejected(call);
    expect(err.code).toBe(code);
    expect(snapshot()).toEqual(before);
    // The owner's stream still has the listener, unfiltered: every new exit reaches it.
    const had = ownerEvents;
    source.kernel.exitNow(20);
    await eventually(() => ownerEvents === had + 20);
    expect(running.server.stats().streams).toBe(1);
  });

  it("prints an after_seq near 2^64 exactly", async () => {
    const err = await rejected(() => drain({ listenerId: owned, afterSeq: HUGE }));
    expect(err.rawMessage).toContain(`after_seq ${HUGE} is beyond`);
  });
});
