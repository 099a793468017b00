/** The fleet publisher's pump (src/fleet/_pump.ts) on its own: a sim source's records, a JetStream client whose acks the test decides. */
import { describe, expect, it } from "vitest";
import type { JetStreamClient, PubAck } from "@nats-io/jetstream";
import type { MsgHdrs } from "@nats-io/nats-core";
import { createRegistry } from "../src/core/registry.ts";
import type { QueuedLoss, QueueItem } from "../src/core/event-queue.ts";
import type { ExitRecord } from "../src/kernel/exit-record.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { BATCH_HEADER, batchesOf, createPump, HEADER_ROOM, MAX_BATCH_SPAN, RESENT_HEADER } from "../src/fleet/_pump.ts";
import { MessageCutter, type Outgoing, wireBytes } from "../src/fleet/_message-cutter.ts";
import { encodeEvents } from "../src/rpc/fast-binary/batch.ts";
import { eventSpans } from "../src/rpc/fast-binary/event-spans.ts";
import { LossReason } from "../src/gen/taskwire/v1/taskstats_pb.ts";
import { MessageLimits, REFRESH_MS, REREAD_MS } from "../src/fleet/_message-limits.ts";
import { checkFleetMessage } from "../clients/ts/src/_fleet-message.ts";
import { eventually } from "./helpers.ts";

interface Published {
  readonly msgID: string;
  readonly batch: string;
  /** RESENT_HEADER, "" when absent. */
  readonly resent: string;
  readonly seqs: number[];
}

// A JetStreamClient whose publish the test answers: `fail(n)` makes the next n publishes time out.
function fakeJetStream() {
  const published: Published[] = [];
  let failing = 0;
  const js = {
    publish(_subject: string, payload: Uint8Array, o: { msgID: string; headers: MsgHdrs }): Promise<PubAck> {
      const seqs = checkFleetMessage(payload).flatMap((e) => [e.first, e.last]);
      published.push({
        msgID: o.msgID,
        batch: o.headers.get(BATCH_HEADER),
        resent: o.headers.get(RESENT_HEADER),
        seqs,
      });
      if (failing > 0) return (failing--, Promise.reject(new Error("timeout")));
      return Promise.resolve({ stream: "T", seq: published.length, duplicate: false } as PubAck);
    },
  } as unknown as JetStreamClient;
  return { js, published, fail: (n: number) => (failing = n) };
}

describe("fleet pump", () => {
  it("a message sent again says so, with the last seq handed out by then; as its batch, all from before its own", async () => {
    const source = createSimSource({ cpus: 4, exitRate: 2000, seed: 7 });
    const registry = createRegistry<ExitRecord, Uint8Array>({ feed: source, retain: () => new Uint8Array() });
    const listener = registry.create([0, 1, 2, 3], {
      buffer: 65_536,
      policy: "drop-newest",
      ephemeral: false,
      owner: "t",
    });
    const { js, published, fail } = fakeJetStream();
    fail(1);
    const pump = createPump({
      js,
      listener,
      stream: "S",
      prefix: "p",
      host: "h",
      window: 4,
      lingerMs: 5,
      ackTimeoutMs: 1000,
      limits: { bytes: () => Infinity, reread: async () => {}, refresh: () => {}, raise: () => "" },
      log: () => {},
    });
    await eventually(() => pump.counters().retries > 0 && published.length > 10, 5000);
    await pump.drain(1000);
    await source.close();
    const first = published[0]!;
    const again = published.slice(1).find((p) => p.msgID === first.msgID)!;
    expect(again, "the failed message is sent again with its id").toBeDefined();
    const [from, to] = again.batch.split("-").map(Number) as [number, number];
    expect(from).toBe(first.seqs[0]! - 1);
    // Everything handed out before the resend, i.e. every seq published before it, and nothing after.
    const before = published.slice(0, published.indexOf(again)).flatMap((p) => p.seqs);
    expect(to).toBe(Math.max(...before));
    expect(again.resent).toBe(String(to));
    // Every first send names its batch: a range holding its seqs.
    for (const p of published.filter((p) => p !== again)) {
      const [f, l] = p.batch.split("-").map(Number) as [number, number];
      expect(f <= p.seqs[0]! && p.seqs[p.seqs.length - 1]! <= l, `${p.batch} ${p.seqs}`).toBe(true);
      expect(p.resent).toBe("");
    }
  });

  it("a take is cut where its range would pass MAX_BATCH_SPAN; a wide loss marker goes alone", () => {
    const exit = (seq: number) => ({ kind: "exit" as const, seq });
    const lost = (first: number, last: number): Pick<QueuedLoss, "kind" | "first" | "last"> => ({
      kind: "lost",
      first,
      last,
    });
    const span = (items: readonly ({ kind: string; seq?: number; first?: number; last?: number })[]) =>
      items.map((i) => (i.kind === "lost" ? `${i.first}-${i.last}` : `${i.seq}`)).join(",");
    const plain = [exit(1), exit(2), exit(3)];
    expect(batchesOf(plain)[0]).toBe(plain); // uncut: the take itself
    const wide = [exit(10), exit(11), lost(12, 100_011), exit(100_012), exit(100_013)];
    expect(batchesOf(wide).map(span)).toEqual(["10,11", "12-100011", "100012,100013"]);
    const narrow = [exit(1), lost(2, MAX_BATCH_SPAN - 1), exit(MAX_BATCH_SPAN), exit(MAX_BATCH_SPAN + 1)];
    expect(batchesOf(narrow).map(span)).toEqual([
      `1,2-${MAX_BATCH_SPAN - 1},${MAX_BATCH_SPAN}`,
      `${MAX_BATCH_SPAN + 1}`,
    ]);
  });
});

describe("the publisher's message limits", () => {
  // A stream whose max_msg_size the test sets, counting reads; `clock` is the limits' time, ms.
  function limitsOf(maxMsgSize: number) {
    const t = {
      clock: 0,
      reads: 0,
      size: maxMsgSize,
      fail: false,
      lines: [] as string[],
      gate: undefined as Promise<void> | undefined,
    };
    const source = {
      stream: "S",
      maxPayload: () => 1 << 20,
      readMaxMsgSize: async () => {
        t.reads++;
        await t.gate; // a JetStream slow to answer
        if (t.fail) throw new Error("no responders");
        return t.size;
      },
    };
    const limits = new MessageLimits({
      source,
      maxMsgSize,
      log: (_, text) => void t.lines.push(text),
      now: () => t.clock,
    });
    return { t, limits };
  }

  it("read again at most once per REREAD_MS, however often NATS refuses; one read at a time", async () => {
    const { t, limits } = limitsOf(16384);
    t.size = 4096;
    for (let i = 0; i < 100; i++) await limits.reread(); // a burst of refusals at start: read there, just before
    expect(t.reads).toBe(0);
    t.clock = REREAD_MS;
    await Promise.all(Array.from({ length: 100 }, () => limits.reread()));
    expect([t.reads, limits.bytes()]).toEqual([1, 4096]);
    for (let ms = 0; ms < 10 * REREAD_MS; ms += 10) (t.clock += 10, await limits.reread());
    expect(t.reads).toBe(11);
    expect(t.lines).toEqual([
      "fleet: stream S's max_msg_size is now 4096 bytes (was 16384 bytes); messages are cut to it",
    ]);
  });

  it("asked during a slow read, even past REREAD_MS, it reads no more and resolves once that read is in", async () => {
    const { t, limits } = limitsOf(16384);
    let answer = () => {};
    t.gate = new Promise<void>((resolve) => (answer = resolve));
    [t.size, t.clock] = [4096, REREAD_MS];
    const first = limits.reread();
    t.clock = 3 * REREAD_MS;
    let second = false;
    const asked = limits.reread().then(() => (second = true));
    await Promise.resolve();
    expect([t.reads, second, limits.bytes()]).toEqual([1, false, 16384]);
    answer();
    await asked;
    expect([t.reads, limits.bytes()]).toEqual([1, 4096]); // the second resolved with the first read, its limit known
    await first;
    t.clock = 4 * REREAD_MS; // once that read is in, the next is spaced from when it began
    await limits.reread();
    expect(t.reads).toBe(2);
  });

  it("while they cut messages, read again once REFRESH_MS passed since the last read: a raised limit is seen", async () => {
    const { t, limits } = limitsOf(4096);
    t.size = -1; // raised: no message is refused, so nothing else would read it
    for (; t.clock < REFRESH_MS; t.clock += 100) limits.refresh();
    await Promise.resolve();
    expect([t.reads, limits.bytes()]).toEqual([0, 4096]);
    limits.refresh();
    await eventually(() => limits.bytes() === 1 << 20, 1000);
    expect(t.reads).toBe(1);
    t.clock += REFRESH_MS - 1;
    limits.refresh();
    await limits.reread(); // a read for a refusal: the next refresh counts from it
    t.clock += REFRESH_MS - 1;
    limits.refresh();
    await Promise.resolve();
    expect(t.reads).toBe(2);
  });

  it("a read that fails keeps the limit known; -1 and 0 are no limit; the smaller limit is named", async () => {
    const { t, limits } = limitsOf(4096);
    t.fail = true;
    t.clock = REREAD_MS;
    await limits.reread();
    expect(limits.bytes()).toBe(4096);
    expect(limits.raise()).toMatch(/^stream S's max_msg_size \(4096 bytes\): raise it \(nats stream edit S/);
    [t.fail, t.size, t.clock] = [false, -1, 2 * REREAD_MS];
    await limits.reread();
    expect(limits.bytes()).toBe(1 << 20);
    expect(limits.raise()).toMatch(/^the NATS server's max_payload \(1048576 bytes\): raise it in its configuration/);
  });
});

describe("a message cut again from its payload", () => {
  // CPU 2's events of a take: sim exits numbered from 1, a loss marker of seqs 41..45 among them.
  function take(): QueueItem<ExitRecord>[] {
    const source = createSimSource({ cpus: 4, exitRate: 0, seed: 11 }) as SimSource;
    const records: ExitRecord[] = [];
    source.kernel.onRecord = (r) => void (r.cpu === 2 && records.push(r));
    source.kernel.watch([0, 1, 2, 3], true);
    source.kernel.exitNow(1200);
    const items: QueueItem<ExitRecord>[] = records.slice(0, 40).map((record, i) => ({
      kind: "exit",
      seq: i + 1,
      record,
    }));
    items.push({ kind: "lost", first: 41, last: 45, reason: "subscriber-overflow", cpu: 2 });
    for (const [i, record] of records.slice(40, 200).entries()) items.push({ kind: "exit", seq: 46 + i, record });
    return items;
  }

  // A cutter whose limit the test sets, and the warnings it logged.
  function cutter() {
    const t = { limit: Infinity, lines: [] as string[] };
    const limits = { bytes: () => t.limit, reread: async () => {}, refresh: () => {}, raise: () => "max_payload" };
    const c = new MessageCutter({
      prefix: "p",
      host: "h",
      run: "r",
      limits,
      log: (_, text) => void t.lines.push(text),
    });
    return { t, c };
  }

  const decoded = (ms: readonly Outgoing[]) => ms.flatMap((m) => checkFleetMessage(m.payload));

  it("each piece decodes, fits, holds whole events in seq order, and is named by its first seq", () => {
    const items = take();
    const { t, c } = cutter();
    const [whole] = c.fitted(2, items, "1-205");
    expect(whole!.events).toBe(items.length);
    t.limit = HEADER_ROOM + 4096;
    const pieces = c.refit(whole!);
    expect(pieces.length).toBeGreaterThan(4);
    expect(decoded(pieces)).toEqual(decoded([whole!])); // every event, as it was, in order
    for (const m of pieces) {
      const seqs = checkFleetMessage(m.payload);
      expect(m.payload.length + HEADER_ROOM).toBeLessThanOrEqual(t.limit);
      expect([m.seq, m.msgID, m.cpu, m.subject, m.events]).toEqual([
        seqs[0]!.first,
        `h:r:${seqs[0]!.first}`,
        2,
        "p.h.exits.2",
        seqs.length,
      ]);
    }
    // Halved by events as the records were (the cut before messages kept no records): the same pieces.
    const halves = (list: QueueItem<ExitRecord>[]): number[] =>
      list.length === 1 || encodeEvents(list).length + HEADER_ROOM <= t.limit
        ? [list.length]
        : [...halves(list.slice(0, list.length >> 1)), ...halves(list.slice(list.length >> 1))];
    expect(pieces.map((m) => m.events)).toEqual(halves(items));
    expect(pieces.reduce((n, m) => n + m.events, 0)).toBe(items.length);
    expect([c.oversize, t.lines]).toEqual([0, []]);
  });

  it("an exit no message holds becomes a loss marker of its seq on the message's CPU, counted, the rest kept", () => {
    const items = take();
    const { t, c } = cutter();
    const [whole] = c.fitted(2, items, "1-205");
    const size = (item: QueueItem<ExitRecord>) => encodeEvents([item]).length;
    const exits = items.filter((i) => i.kind === "exit");
    const largest = Math.max(...exits.map(size));
    const tooLarge = exits.filter((i) => size(i) === largest).map((i) => i.seq);
    expect(tooLarge.length).toBeLessThan(exits.length); // some exits fit, some do not
    t.limit = HEADER_ROOM + largest - 1;
    const events = decoded(c.refit(whole!));
    expect(events.map((e) => [e.first, e.last])).toEqual(decoded([whole!]).map((e) => [e.first, e.last]));
    for (const seq of tooLarge) {
      const ev = events.find((e) => e.first === seq)!.ev;
      expect(ev.event.case).toBe("lost");
      expect(ev.cpu).toBe(2);
      if (ev.event.case !== "lost") continue;
      expect([ev.event.value.firstSeq, ev.event.value.lastSeq, ev.event.value.count]).toEqual([
        BigInt(seq),
        BigInt(seq),
        1n,
      ]);
      expect(ev.event.value.reason).toBe(LossReason.SOURCE_ERROR);
    }
    expect(events.filter((e) => e.ev.event.case === "lost").length).toBe(tooLarge.length + 1); // and 41-45
    expect(c.oversize).toBe(tooLarge.length);
    expect(t.lines).toHaveLength(1); // once per limit
    expect(t.lines[0]).toMatch(new RegExp(`^fleet: exit ${tooLarge[0]} \\(${largest} bytes\\) fits in no message`));
  });

  it("a message NATS refused for its size goes smaller, whatever the limits known say; a loss marker, not at all", async () => {
    const items = take();
    const { t, c } = cutter(); // the limits known: none (stale, or unreadable)
    const [whole] = c.fitted(2, items, "1-205");
    const halves = c.smaller(whole!);
    expect(halves.map((m) => m.events)).toEqual([items.length >> 1, items.length - (items.length >> 1)]);
    expect(decoded(halves)).toEqual(decoded([whole!]));
    const [exit] = c.fitted(2, items.slice(0, 1), "1-1");
    const [marker] = c.smaller(exit!); // one exit: its loss marker
    expect(decoded([marker!]).map((e) => [e.first, e.last, e.ev.event.case])).toEqual([[1, 1, "lost"]]);
    expect(c.oversize).toBe(1);
    const [overflow] = c.fitted(2, items.filter((i) => i.kind === "lost"), "41-45");
    expect(c.smaller(overflow!)).toEqual([]); // one loss marker: nothing smaller holds it
    expect(c.smaller(marker!)).toEqual([]);
    expect(c.unsent).toBe(5 + 1);
    const warned = () => t.lines.filter((l) => l.includes("NATS refused the loss marker"));
    await eventually(() => warned().length === 1, 1000); // once per limit (read again first)
    // Not sent at all when the limits known are under its message, headers included: 88 bytes here.
    t.limit = wireBytes(marker!);
    expect(c.unsendable(marker!)).toBe(false);
    t.limit--;
    expect(c.unsendable(marker!)).toBe(true);
    expect(c.unsendable(whole!)).toBe(false); // exits are cut, not left unsent
    expect(c.unsent).toBe(7);
    await eventually(() => warned().length === 2, 1000);
    expect(warned()[1]).toMatch(
      /^fleet: NATS refused the loss marker of exits 1-1 \(\d+ bytes and its headers\).*max_payload$/,
    );
  });

  it("reads each event's first seq and kind from its bytes; refuses what encodeEvents did not write", () => {
    const items = take();
    const spans = eventSpans(encodeEvents(items));
    expect(spans.map((e) => [e.first, e.last, e.exit])).toEqual(
      items.map((i) => (i.kind === "exit" ? [i.seq, i.seq, true] : [i.first, i.last, false])),
    );
    expect(spans.map((e) => e.bytes.length)).toEqual(items.map((i) => encodeEvents([i]).length));
    expect(() => eventSpans(new Uint8Array([0x12, 1, 0]))).toThrow(/not an events entry/);
    expect(() => eventSpans(encodeEvents(items).subarray(0, 100))).toThrow();
  });
});
