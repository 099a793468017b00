/**
 * The encode gate: streams whose batches are dear to encode (JSON, field
 * masks) share a number of events per event-loop turn, first come first
 * served, so that a few never-reading JSON streams cannot hold the loop
 * while exits pile up past a reading principal's fair share.
 */
import { describe, expect, it } from "vitest";
import { createRegistry } from "../src/core/registry.ts";
import type { StreamItem } from "../src/core/retention.ts";
import { subscribe, type SubscriptionOptions } from "../src/core/subscription.ts";
import { createEncodeGate } from "../src/rpc/encode-gate.ts";
import { manualFeed } from "./helpers.ts";

interface Rec {
  readonly cpu: number;
  readonly n: number;
}

// A gate of a fixed share whose turns the test runs by hand.
function manualGate(perTurn: number) {
  const turns: (() => void)[] = [];
  const gate = createEncodeGate({ eventsPerTurn: perTurn, msPerTurn: Infinity, defer: (fn) => turns.push(fn) });
  const turn = async () => {
    for (const fn of turns.splice(0)) fn();
    await new Promise((r) => setTimeout(r, 0)); // the streams it let through run
  };
  return { gate, turns, turn };
}

describe("createEncodeGate", () => {
  it("admits up to its share in a turn, then makes the rest wait for the next, first come first served", async () => {
    const { gate, turn } = manualGate(5);
    expect(gate.admit(3)).toBe(3);
    expect(gate.admit(4)).toBe(2); // what is left of the turn's share
    const got: string[] = [];
    void Promise.resolve(gate.admit(4)).then((n) => got.push(`a${n}`));
    void Promise.resolve(gate.admit(4)).then((n) => got.push(`b${n}`));
    await Promise.resolve();
    expect(got).toEqual([]);
    await turn();
    expect(got).toEqual(["a4", "b1"]);
  });

  it("stops scheduling turns once a turn went unused (no timer while no stream pays)", async () => {
    const { gate, turns, turn } = manualGate(5);
    gate.admit(5);
    void gate.admit(1); // waits
    expect(turns.length).toBe(1);
    await turn(); // the waiter admitted: the turn's share is in use, so one more turn is armed
    expect(turns.length).toBe(1);
    await turn(); // nobody asked in that one
    expect(turns.length).toBe(0);
    expect(gate.admit(2)).toBe(2); // the next ask arms a turn again
    expect(turns.length).toBe(1);
  });

  it("shares a turn round-robin between principals: one with a thousand streams cannot crowd out another's one", async () => {
    // The attacker's streams ask for one event each (max_batch 1) and ask again as soon as served, so the
    // queue stays full of them; first come first served, the victim's stream was served once in ~16 turns,
    // and then only what the turn had left.
    const { gate, turn } = manualGate(64);
    let attacker = 0, victim = 0, victimGrants = 0;
    const attack = (): void => {
      void Promise.resolve(gate.admit(1, "attacker")).then((n) => {
        attacker += n;
        attack();
      });
    };
    for (let i = 0; i < 1000; i++) attack();
    const read = (): void => {
      void Promise.resolve(gate.admit(256, "victim")).then((n) => {
        victim += n;
        victimGrants++;
        read();
      });
    };
    read();
    for (let t = 0; t < 20; t++) await turn();
    expect(attacker + victim).toBeLessThanOrEqual(64 * 21); // the share holds
    expect(victimGrants).toBeGreaterThanOrEqual(19); // served every turn (the first one's share went first come)
    expect(victim).toBeGreaterThanOrEqual(19 * 63); // all the turn had past the attacker's one event
  });

  it("serves one principal's streams in the order they came", async () => {
    const { gate, turn } = manualGate(2);
    gate.admit(2, "a"); // the share spent
    const got: string[] = [];
    for (const w of ["a1", "a2", "b1", "a3"]) {
      void Promise.resolve(gate.admit(1, w[0])).then(() => got.push(w));
    }
    await turn();
    expect(got).toEqual(["a1", "b1"]);
    await turn();
    expect(got).toEqual(["a1", "b1", "a2", "a3"]);
    expect(gate.waiting).toBe(0); // no principal's lane left behind
  });

  it("refuses a share that is not a positive integer, and a time per turn that is not positive", () => {
    expect(() => createEncodeGate({ eventsPerTurn: 0 })).toThrow(RangeError);
    expect(() => createEncodeGate({ eventsPerTurn: 1.5 })).toThrow(/positive integer/);
    expect(() => createEncodeGate({ msPerTurn: 0 })).toThrow(/ms per turn must be a positive number/);
    expect(() => createEncodeGate({ msPerTurn: NaN })).toThrow(RangeError);
  });

  it("lets through as many events a turn as took its time per turn in the last one, growing at most twofold", async () => {
    // What an event costs varies tenfold (a cold serializer, a loaded CPU): a share of events alone let a turn's
    // batches take 150-256 ms where they took 13 ms on a quieter machine.
    let clock = 0, cost = 0.5; // ms an event takes to encode
    const turns: (() => void)[] = [];
    const gate = createEncodeGate({
      eventsPerTurn: 256,
      msPerTurn: 16,
      defer: (fn) => turns.push(fn),
      now: () => clock,
    });
    const grants: number[] = [];
    const ask = (): void => {
      void Promise.resolve(gate.admit(1000)).then((n) => {
        clock += n * cost; // the batch is made and serialized as the stream resumes
        grants.push(n);
        ask();
      });
    };
    const settle = () => new Promise((r) => setTimeout(r, 0));
    // The turn, then the measure (as setImmediate runs them: the streams' microtasks in between).
    const turn = async () => {
      for (const fn of turns.splice(0)) {
        fn();
        await settle();
      }
    };
    expect(gate.share).toBe(16); // it starts small: the first batches of a JSON attack are the dearest
    ask();
    await settle();
    for (let t = 0; t < 3; t++) await turn();
    expect(grants).toEqual([16, 16, 32, 32]); // the first turn's 16 took 8 ms: then 32 a turn, 16 ms
    cost = 0.05;
    for (let t = 0; t < 4; t++) await turn();
    expect(grants.slice(4)).toEqual([32, 64, 128, 256]); // twofold a turn, to the most a turn may hold
    cost = 2;
    await turn(); // 256 events took 512 ms
    expect(gate.share).toBe(16); // at once; never under 16 (a turn the OS took the CPU from is no measure)
    await turn();
    expect(grants.slice(8)).toEqual([256, 16]);
  });
});

describe("a subscription with a gate", () => {
  const retain = (r: Rec) => `payload ${r.n}`;
  const encode = {
    open: () => "open",
    batch: (items: readonly StreamItem<Rec, string>[]) =>
      items.map((i) => (i.kind === "lost" ? "lost" : String(i.seq))).join(","),
    heartbeat: () => "hb",
  };
  // A listener with exits 1..queued queued.
  const setup = (queued = 5) => {
    const feed = manualFeed<Rec>();
    const reg = createRegistry<Rec, string>({ feed, retain });
    const l = reg.create([0], { buffer: 16, policy: "drop-newest", ephemeral: false, owner: "t" });
    for (let n = 1; n <= queued; n++) feed.sink.exit({ cpu: 0, n });
    return { feed, reg, l };
  };
  // A stream of `l` in batches of at most 8, without heartbeats in a test's time; `o` adds a gate, a signal, a linger.
  const stream = (
    reg: ReturnType<typeof setup>["reg"],
    l: ReturnType<typeof setup>["l"],
    o: Partial<SubscriptionOptions<Rec, string, string>> = {},
  ) => subscribe(reg, l, { maxBatch: 8, heartbeatMs: 60_000, signal: new AbortController().signal, encode, ...o });

  it("takes no more than the gate admits, and the rest a turn later, every exit once and in order", async () => {
    const { reg, l } = setup();
    const { gate, turn } = manualGate(2);
    const ctl = new AbortController();
    const sub = stream(reg, l, { signal: ctl.signal, gate });
    expect((await sub.next()).value).toBe("open");
    expect((await sub.next()).value).toBe("1,2");
    const next = sub.next();
    let settled = false;
    void next.then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(settled).toBe(false); // the turn's share is spent
    await turn();
    expect((await next).value).toBe("3,4");
    const last = sub.next();
    await turn();
    expect((await last).value).toBe("5");
    ctl.abort();
  });

  it("lingers after a batch that emptied the queue, gated or not, but not after one the gate cut short", async () => {
    // A stream lingers (lingerMs) after a partial batch so the next grows; a batch the gate cut leaves events queued.
    const pending = async (p: Promise<unknown>) => {
      let settled = false;
      void p.then(() => (settled = true), () => (settled = true));
      await new Promise((r) => setTimeout(r, 30));
      return !settled;
    };
    for (const gated of [false, true]) {
      const { feed, reg, l } = setup(3);
      const ctl = new AbortController();
      const { gate } = manualGate(64);
      const sub = stream(reg, l, { signal: ctl.signal, lingerMs: () => 60_000, ...(gated && { gate }) });
      await sub.next(); // open
      expect((await sub.next()).value).toBe("1,2,3"); // emptied the queue: a partial batch
      feed.sink.exit({ cpu: 0, n: 4 });
      expect(await pending(sub.next())).toBe(true); // lingering, gated or not
      ctl.abort();
    }
    const { reg, l } = setup(); // 5 queued
    const { gate, turn } = manualGate(2);
    const sub = stream(reg, l, { lingerMs: () => 60_000, gate });
    await sub.next();
    expect((await sub.next()).value).toBe("1,2"); // cut by the gate: 3 more queued
    const next = sub.next();
    await turn();
    expect(await pending(next)).toBe(false); // no linger: the next turn's share goes out at once
    expect((await next).value).toBe("3,4");
  });

  it("a stream aborted while the gate held it lets its listener go at once, and makes no batch", async () => {
    const { reg, l } = setup();
    const { gate, turn } = manualGate(2);
    const ctl = new AbortController();
    const sub = stream(reg, l, { signal: ctl.signal, gate });
    await sub.next();
    expect((await sub.next()).value).toBe("1,2");
    const waiting = sub.next();
    await new Promise((r) => setTimeout(r, 0));
    ctl.abort();
    expect(l.attached).toBe(false); // not a turn later
    await turn();
    expect((await waiting).done).toBe(true);
    expect(l.queue.length).toBe(3); // 3, 4, 5 still queued for the next stream
  });

  it("a stream whose listener is removed while the gate held it still sends what was queued, then says so", async () => {
    const { reg, l } = setup();
    const { gate, turn } = manualGate(2);
    const sub = stream(reg, l, { gate });
    await sub.next();
    expect((await sub.next()).value).toBe("1,2");
    const waiting = sub.next();
    await new Promise((r) => setTimeout(r, 0));
    reg.remove(l, "deregistered");
    await turn();
    expect((await waiting).value).toBe("3,4");
    const last = sub.next();
    await turn();
    expect((await last).value).toBe("5");
    await expect(sub.next()).rejects.toThrow(/deregistered/); // its queue sent
  });

  it("a reading stream loses nothing while streams whose batches are dear keep the gate busy", async () => {
    // The JSON attack's shape, with the encoding made dear on purpose (5 ms an event): exits come from a timer, those
    // due since it last ran at once (as the sources hand them on after a long turn), and the reading stream's queue
    // holds a second of them. A share of 256 events a turn made turns of 1.3 s and the reader lost exits; the gate
    // lets a turn's batches take about its time per turn (at least 16 events: 80 ms here).
    const feed = manualFeed<Rec>();
    const reg = createRegistry<Rec, string>({ feed, retain });
    const rate = 2; // exits a ms
    const reader = reg.create([0], { buffer: 2000, policy: "drop-newest", ephemeral: false, owner: "reader" });
    const gate = createEncodeGate();
    const busy = (ms: number) => {
      for (const until = performance.now() + ms; performance.now() < until;);
    };
    const dear = { ...encode, batch: (items: readonly StreamItem<Rec, string>[]) => (busy(5 * items.length), "b") };
    const ctl = new AbortController();
    let attackerEvents = 0;
    const attackers = [0, 1, 2, 3].map(async (i) => {
      const l = reg.create([0], { buffer: 100_000, policy: "drop-newest", ephemeral: false, owner: `attacker${i}` });
      const sub = subscribe(reg, l, { maxBatch: 256, heartbeatMs: 60_000, signal: ctl.signal, encode: dear, gate });
      for await (const _ of sub) attackerEvents = l.delivered;
    });
    const reading = (async () => {
      const sub = subscribe(reg, reader, { maxBatch: 256, heartbeatMs: 60_000, signal: ctl.signal, encode });
      for await (const _ of sub) { /* reads everything */ }
    })();
    const start = performance.now();
    let sent = 0;
    const source = setInterval(() => {
      for (const due = Math.floor((performance.now() - start) * rate); sent < due;) {
        feed.sink.exit({ cpu: 0, n: ++sent });
      }
    }, 5);
    await new Promise((r) => setTimeout(r, 2500));
    clearInterval(source);
    ctl.abort();
    await Promise.all([...attackers, reading]);
    expect(sent).toBeGreaterThan(2000); // a second's worth came at least
    expect(attackerEvents).toBeGreaterThan(0);
    expect(reader.produced).toBe(sent);
    expect(Object.values(reader.lost).reduce((a, b) => a + b, 0)).toBe(0);
  }, 10_000);

  it("a stream taken over while the gate held it makes no batch of the new stream's queue", async () => {
    const { reg, l } = setup();
    const { gate, turn } = manualGate(2);
    const a = stream(reg, l, { gate });
    await a.next();
    await a.next(); // "1,2": the share spent
    const waiting = a.next();
    const other = new AbortController();
    const b = stream(reg, l, { signal: other.signal });
    await b.next(); // takes the listener over
    const refused = expect(waiting).rejects.toThrow(/another stream/);
    await turn();
    await refused;
    expect((await b.next()).value).toBe("3,4,5");
    other.abort();
  });
});
