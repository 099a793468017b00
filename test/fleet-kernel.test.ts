/**
 * The fleet on the real kernel: a taskwire on the netlink source publishing
 * a thread storm to a real nats-server, beside an RPC subscriber on every
 * CPU in the same run. Both are listeners of the same core, so from the RPC
 * listener's creation on they are produced the same records; aligned on
 * that offset, the JetStream consumer's received + lost equals the RPC
 * subscriber's, and every exit both received is the same exit.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExitEvent, watchExits } from "@taskwire/client";
import type { NetlinkSource } from "../src/sources/netlink/netlink-source.ts";
import { FLEET_OWNER, startFleetPublisher } from "../src/fleet/publisher.ts";
import { collectFleet, haveNatsServer, type NatsServer, startNats, tally } from "./fleet-nats.ts";
import { eventually, type Running, startServer } from "./helpers.ts";
import { netlinkMissing, runHelper } from "./native.ts";

const missing = !haveNatsServer ? "/usr/sbin/nats-server is not installed" : await netlinkMissing();

describe.skipIf(missing !== undefined)(`fleet on the real kernel${missing ? ` (skipped: ${missing})` : ""}`, () => {
  let nats: NatsServer;
  beforeAll(async () => {
    nats = await startNats();
  });
  afterAll(async () => {
    await nats?.close();
  });

  it("a thread storm: the JetStream consumer's received + lost equals the RPC subscriber's", async () => {
    const { openNetlinkSource } = await import("../src/sources/netlink/netlink-source.ts");
    const source: NetlinkSource = await openNetlinkSource();
    // A small publisher queue and window, so the storm may overflow it: losses must add up too.
    const fleet = await startFleetPublisher({
      servers: nats.url,
      stream: "KERNEL_TEST",
      prefix: "k",
      buffer: 256,
      window: 1,
    });
    const s: Running = await startServer(source, { maxBuffer: 1 << 20 }, {
      hostName: "kernel-host",
      fleet,
      accessLog: false,
    });
    const consumer = collectFleet({ servers: nats.url, stream: "KERNEL_TEST", subjectPrefix: "k", deliver: "all" });
    const rpc: ExitEvent[] = [];
    const ctl = new AbortController();
    let rpcId = "";
    let opened!: () => void;
    const subscribed = new Promise<void>((r) => (opened = r));
    const done = (async () => {
      for await (
        const ev of watchExits(s.client, {
          cpumask: source.possible.list,
          buffer: 1024,
          signal: ctl.signal,
          onSubscribed: (i) => ((rpcId = i.listenerId), opened()),
        })
      ) rpc.push(ev);
    })().catch(() => {});
    try {
      await subscribed;
      const storm = await runHelper(["storm", "30000", "8"]);
      expect(storm.code).toBe(0);
      const fleetId = (await s.client.getInfo({ listeners: true })).listenerDetails.find((l) =>
        l.owner === FLEET_OWNER
      )!
        .listenerId;
      // The storm's exits reach the listeners after it ends (the reader's batch window, its worker's hand-off): its
      // 30,000 first, then the publisher drained. Looked at before, a listener could be a few records short of them.
      const produced = (id: string) => s.server.listeners().find((l) => l.id === id)?.produced ?? 0;
      await eventually(() => produced(rpcId) >= 30_000 && produced(fleetId) >= 30_000, 30_000);
      await eventually(() => fleet.state().queued === 0 && fleet.state().pending === 0, 30_000);
      // One synchronous look at both listeners: from here back to the RPC listener's creation they got the same records.
      const byId = new Map(s.server.listeners().map((l) => [l.id, l.produced]));
      const fleetAt = byId.get(fleetId)!, rpcAt = byId.get(rpcId)!;
      const offset = fleetAt - rpcAt;
      await eventually(() => (tally(consumer.events).get("kernel-host")?.next ?? 1) - 1 >= fleetAt, 30_000);
      await eventually(() => rpc.length > 0 && Number(rpc[rpc.length - 1]!.seq) >= rpcAt, 30_000);
      const js = window(consumer.events, offset + 1, fleetAt);
      const direct = window(rpc, 1, rpcAt);
      expect(js.gaps).toEqual([]);
      expect(direct.gaps).toEqual([]);
      expect(js.received + js.lost).toBe(rpcAt);
      expect(direct.received + direct.lost).toBe(rpcAt);
      expect(rpcAt).toBeGreaterThanOrEqual(30_000);
      // Aligned on the offset, an exit both received is the same exit.
      let same = 0;
      for (const [seq, ev] of direct.exits) {
        const other = js.exits.get(seq + offset);
        if (other === undefined) continue;
        expect([other.cpu, pidOf(other)]).toEqual([ev.cpu, pidOf(ev)]);
        same++;
      }
      expect(same).toBeGreaterThan(0);
      console.log(
        `fleet-kernel: ${rpcAt} produced per listener; JetStream received ${js.received} lost ${js.lost}; RPC received ${direct.received} lost ${direct.lost}`,
      );
    } finally {
      ctl.abort();
      await done;
      await consumer.stop().catch(() => {});
      await s.close();
      await s.server.close();
    }
  }, 120_000);
});

function pidOf(ev: ExitEvent): number {
  return ev.event.case === "exit" ? ev.event.value.pid : -1;
}

/** The events covering seqs first..last: received, lost, exits by seq, and any seq not covered exactly once in order. */
function window(events: readonly ExitEvent[], first: number, last: number) {
  let received = 0, lost = 0, next = first;
  const exits = new Map<number, ExitEvent>();
  const gaps: string[] = [];
  for (const ev of events) {
    const [a, b] = ev.event.case === "lost"
      ? [Number(ev.event.value.firstSeq), Number(ev.event.value.lastSeq)]
      : [Number(ev.seq), Number(ev.seq)];
    if (b < first || a > last) continue;
    const lo = Math.max(a, first), hi = Math.min(b, last);
    if (lo !== next && gaps.length < 5) gaps.push(`${lo} after ${next - 1}`);
    next = hi + 1;
    if (ev.event.case === "lost") lost += hi - lo + 1;
    else (received++, exits.set(a, ev));
  }
  if (next !== last + 1) gaps.push(`ended at ${next - 1}, not ${last}`);
  return { received, lost, exits, gaps };
}
