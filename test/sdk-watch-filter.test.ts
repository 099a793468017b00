/**
 * watchExits honours its filter for every event it yields, including records
 * queued for a listener before the filtered stream opened (the server
 * filters from a stream's opening on).
 */
import { type ExitEvent, watchExits } from "@taskwire/client";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { eventually, type Running, startServer } from "./helpers.ts";

let source: SimSource;
let running: Running;
beforeAll(async () => {
  source = createSimSource({ cpus: 2, exitRate: 0, seed: 3 }) as SimSource;
  running = await startServer(source);
});
afterAll(() => running.close());

it("drops queued records that do not match, and yields the matching ones", async () => {
  const { listenerId } = await running.client.register({ cpumask: "0-1", buffer: 10_000 });
  source.kernel.exitNow(200); // queued before any stream: unfiltered
  const ctl = new AbortController();
  const got: ExitEvent[] = [];
  let opened!: () => void;
  const ready = new Promise<void>((r) => (opened = r));
  const loop = (async () => {
    for await (
      const ev of watchExits(running.client, {
        listenerId,
        filter: { uids: [1000] },
        signal: ctl.signal,
        onSubscribed: () => opened(),
      })
    ) got.push(ev);
  })().catch(() => {});
  await ready;
  source.kernel.exitNow(200); // after the stream opened: filtered by the server
  await eventually(async () =>
    (await running.client.getInfo({ listeners: true })).listenerDetails[0]?.queueDepth === 0
  );
  await new Promise((r) => setTimeout(r, 200));
  ctl.abort();
  await loop;
  const uids = got.map((ev) => (ev.event.case === "exit" ? ev.event.value.pidStats?.acUid : -1));
  expect(uids.length).toBeGreaterThan(20);
  expect(new Set(uids)).toEqual(new Set([1000]));
  await running.client.deregister({ listenerId, cpumask: "all" });
});
