/**
 * Ten SubscribeExits streams on one HTTP/2 session (Connect over h2c,
 * connect-node's transport, as the SDK takes it), whose consumer stops
 * reading for longer than the listener lease while exits keep coming, then
 * reads again. An attack review saw each such stream get a few hundred exits
 * after resuming, and suspected the stall sweep had dropped the streams while
 * they were paused, leaving their clients with what their HTTP/2 windows
 * held. It had not: the sweep drops a stream only while the memory budget is
 * past its limit and its principal over its fair share, and here the budget
 * is far from it. What a stream gets after resuming is what the server had
 * already handed its transport (the batches in the client's stream window
 * and read ahead by connect-node, the server's write buffer, and the one
 * batch the stream holds until 'drain'), then its queue; what its queue
 * could not hold comes as SUBSCRIBER_OVERFLOW loss with the exact range. A
 * small queue makes that a few hundred exits and a marker for the rest:
 * every seq is accounted for, once, and nothing ends the streams.
 */
import { connect as tcpConnect } from "node:net";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createTaskwireClient, LossReason, type SubscribeExitsResponse } from "@taskwire/client";
import { afterEach, describe, expect, it } from "vitest";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { eventually, type Running, sleep, startServer } from "./helpers.ts";

let running: Running | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

/** What one stream's consumer saw. */
interface Tally {
  readonly listenerId: string;
  exits: number;
  lost: number;
  /** Loss by any reason but a full queue's. */
  otherLoss: number;
  /** The last seq covered (an exit's, or a loss marker's last). */
  last: bigint;
  /** Seqs covered out of order, twice, or skipped. */
  misordered: number;
  error: string;
}

const STREAMS = 10, BEFORE = 50, DURING = 3000, LEASE_MS = 500;

describe("ten HTTP/2 streams on one session, paused past the lease and resumed", () => {
  for (const buffer of [8192, 64]) {
    it(`get what their transport held, then their queue of ${buffer} and exact loss for the rest`, async () => {
      const source = createSimSource({ cpus: 2, exitRate: 0, seed: 6 }) as SimSource;
      running = await startServer(source, { leaseMs: LEASE_MS });
      const { port } = running.listening;
      let connections = 0; // every stream and call on this client should share one
      const transport = createConnectTransport({
        baseUrl: running.url,
        httpVersion: "2",
        nodeOptions: { createConnection: () => (connections++, tcpConnect(port, "127.0.0.1")) },
      });
      const client = createTaskwireClient(running.url, { transport });

      let paused = false;
      let resume!: () => void;
      const resumed = new Promise<void>((r) => (resume = r));
      const ctl = new AbortController();
      const tallies: Tally[] = [];
      for (let i = 0; i < STREAMS; i++) {
        const { listenerId } = await client.register({ cpumask: "0-1", buffer });
        const t: Tally = { listenerId, exits: 0, lost: 0, otherLoss: 0, last: 0n, misordered: 0, error: "" };
        tallies.push(t);
        void (async () => {
          try {
            const stream = client.subscribeExits({ listenerId }, { signal: ctl.signal });
            for await (const m of stream as AsyncIterable<SubscribeExitsResponse>) {
              // The pause: this consumer takes no message, so connect-node reads no more of the HTTP/2 stream.
              if (paused) await resumed;
              for (const e of m.events) {
                const first = e.event.case === "lost" ? e.event.value.firstSeq : e.seq;
                if (first !== t.last + 1n) t.misordered++;
                if (e.event.case === "lost") {
                  t.lost += Number(e.event.value.count);
                  if (e.event.value.reason !== LossReason.SUBSCRIBER_OVERFLOW) t.otherLoss++;
                } else t.exits++;
                t.last = e.seq;
              }
            }
            t.error = "ended";
          } catch (err) {
            if (!ctl.signal.aborted) t.error = String(err);
          }
        })();
      }
      source.kernel.exitNow(BEFORE);
      await eventually(() => tallies.every((t) => t.last === BigInt(BEFORE)));

      paused = true;
      for (let sent = 0; sent < DURING; sent += 100) {
        source.kernel.exitNow(100);
        await sleep(10);
      }
      // Paused for over four leases: the sweeps (once a second) saw each stream's batch held for more than a lease.
      await sleep(2500);
      const held = new Map(running.server.listeners().map((l) => [l.id, l]));
      expect(running.server.stats().stalledStreams).toBe(0); // the budget is far from its limit: no stream dropped
      const atResume = tallies.map((t) => held.get(t.listenerId)!);
      for (const l of atResume) {
        expect(l.streaming).toBe(true);
        expect(l.produced).toBe(BEFORE + DURING);
        expect(l.queueDepth).toBeLessThanOrEqual(buffer); // what the transport did not take waits here
        expect(l.queueDepth).toBeGreaterThan(0); // so the pause held the transport up
      }
      const before = tallies.map((t) => t.exits);
      expect(before).toEqual(tallies.map(() => BEFORE));

      paused = false;
      resume();
      await eventually(() => tallies.every((t) => t.last === BigInt(BEFORE + DURING) || t.error !== ""), 10_000);
      const after = new Map(running.server.listeners().map((l) => [l.id, l]));
      tallies.forEach((t, i) => {
        const l = atResume[i]!;
        expect(t).toMatchObject({ error: "", misordered: 0, otherLoss: 0, last: BigInt(BEFORE + DURING) });
        expect(t.exits + t.lost).toBe(BEFORE + DURING); // every seq once: an exit, or inside one loss marker
        // After resuming: every exit the server had handed out (the transport held them), then the queue's.
        expect(t.exits - before[i]!).toBe(l.delivered - BEFORE + l.queueDepth);
        // The loss is the full queue's, counted by the listener before the client read again, and no more since.
        expect(t.lost).toBe(l.lost["subscriber-overflow"]);
        expect(after.get(t.listenerId)!.lost).toEqual(l.lost);
        if (buffer >= DURING) expect(t.lost).toBe(0);
        else expect(l.queueDepth).toBe(buffer);
      });
      expect(running.server.stats().stalledStreams).toBe(0);
      expect(connections).toBe(1);
      console.log(
        `[paused-h2-streams] buffer ${buffer}: after resuming, exits ${
          tallies.map((t, i) => t.exits - before[i]!).join(",")
        } (held by the transport ${atResume.map((l) => l.delivered - BEFORE).join(",")}), lost ${
          tallies.map((t) => t.lost).join(",")
        }`,
      );
      ctl.abort();
    }, 30_000);
  }
});
