/**
 * The fleet publisher when publishes fail for a cause that does not go away by itself: NATS denies the subject (a
 * permissions violation), the stream is sealed, deleted or holds other subjects. Against a real nats-server with
 * users and permissions: the log says NATS's words and what to do, at once and then at a bounded rate (not per
 * message), GetInfo and /metrics show it, it clears once publishing works again, and no exit is lost unaccounted.
 * Also the failures' descriptions and their log on their own.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { startFleetPublisher } from "../src/fleet/publisher.ts";
import { describeFailure, FailureLog } from "../src/fleet/_publish-failure.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import {
  collectFleet,
  haveNatsServer,
  NATS_SERVER,
  type NatsServer,
  startNats,
  stopFleetServer,
  tallied,
} from "./fleet-nats.ts";
import { eventually, startServer } from "./helpers.ts";

const target = { stream: "S", prefix: "tw", host: "h1", ackTimeoutMs: 5000 };

describe("publish failures, described", () => {
  it("a permissions violation names what to grant; a sealed or missing stream what to do; passwords are not shown", () => {
    const pub = describeFailure(
      new Error(`Permissions Violation for Publish to "tw.h1.exits.0"`),
      "tw.h1.exits.0",
      target,
    );
    expect(pub.reason).toBe("permission");
    expect(pub.text).toContain(`Permissions Violation for Publish to "tw.h1.exits.0"`);
    expect(pub.text).toContain("publish to tw.h1.exits.>");
    const sub = describeFailure(
      new Error(`Permissions Violation for Subscription to "_INBOX.x.*"`),
      "tw.h1.exits.0",
      target,
    );
    expect(sub.text).toContain("subscribe to _INBOX.>");
    const sealed = describeFailure(
      Object.assign(new Error("invalid operation on sealed stream"), { code: 10109 }),
      "tw.h1.exits.0",
      target,
    );
    expect(sealed.reason).toBe("sealed");
    expect(sealed.text).toMatch(/stream S is sealed .*delete it/);
    const gone = describeFailure(
      Object.assign(new Error("jetstream is not enabled", { cause: new Error("no responders: 'tw.h1.exits.0'") }), {
        name: "JetStreamNotEnabled",
      }),
      "tw.h1.exits.0",
      target,
    );
    expect(gone.reason).toBe("no-stream");
    expect(gone.text).toContain("no JetStream stream takes tw.h1.exits.0");
    const secret = describeFailure(new Error("cannot reach nats://tw:s3cret@127.0.0.1:1"), "tw.h1.exits.0", target);
    expect(secret.text).not.toContain("s3cret");
    expect(secret.text).toContain("nats://***@127.0.0.1:1");
  });

  it("logs a failure at once, then at most once per interval however many fail, and its end once", () => {
    const lines: string[] = [];
    let now = 1_000_000;
    const log = new FailureLog((level, text) => lines.push(`${level} ${text}`), 60_000, () => now);
    const perm = describeFailure(new Error(`Permissions Violation for Publish to "tw.h1.exits.0"`), "x", target);
    const timeout = describeFailure(Object.assign(new Error("timeout"), { name: "TimeoutError" }), "x", target);
    for (let i = 0; i < 1000; i++) {
      log.failed(i % 2 === 0 ? perm : timeout, { retries: i, dropped: 0 });
      now += 100; // 100 s in all
    }
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^warning fleet: publishing to NATS fails: NATS denies the publisher/);
    // The timeouts that follow a denied publish in the same outage do not hide its cause.
    expect(lines[1]).toMatch(/^warning fleet: publishing to NATS still fails after 60 s \(600 retries.*NATS denies/);
    expect(log.current?.failure.reason).toBe("permission");
    expect(log.counts).toMatchObject({ permission: 500, timeout: 500 });
    log.acked({ retries: 1000, dropped: 7 });
    log.acked({ retries: 1000, dropped: 7 });
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatch(/^info fleet: publishing to NATS again after 100 s .*1000 retries, 7 exits dropped/);
    expect(log.current).toBeUndefined();
  });
});

// A nats.conf (startNats names its store) whose users are: admin may do anything; tw (the publisher) may use the JetStream API, and publish to the
// exits subjects only when `grant`.
function natsConf(file: string, grant: boolean): void {
  const pub = grant ? `["$JS.API.>", "perm.>", "seal.>"]` : `["$JS.API.>", "seal.>"]`;
  writeFileSync(
    file,
    `jetstream { store_dir: $NATS_STORE_DIR }\nauthorization { users = [
      { user: admin, password: admin-pw }
      { user: tw, password: "tw-s3cret-pw", permissions: { publish: { allow: ${pub} }, subscribe: { allow: ["_INBOX.>"] } } }
    ] }\n`,
  );
}

describe.skipIf(!haveNatsServer)(`publishes that fail for good, against ${NATS_SERVER} with permissions`, () => {
  let nats: NatsServer;
  let dir: string;
  let conf: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "taskwire-nats-conf-"));
    conf = join(dir, "nats.conf");
    natsConf(conf, false);
    nats = await startNats(["-c", conf], { confNamesStore: true });
  });
  afterAll(async () => {
    await nats?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const as = (user: string, pass: string) => nats.url.replace("nats://", `nats://${user}:${pass}@`);

  async function publishing(host: string, o: { stream: string; prefix: string }) {
    const lines: string[] = [];
    const fleet = await startFleetPublisher({
      servers: as("tw", "tw-s3cret-pw"),
      ...o,
      buffer: 2000,
      ackTimeoutMs: 1000,
      problemLogMs: 1000,
      log: (level, text) => lines.push(`${level} ${text}`),
    });
    const s = await startServer(createSimSource({ cpus: 4, exitRate: 2000, seed: 3 }), {}, {
      hostName: host,
      fleet,
      accessLog: false,
    });
    return { s: { ...s, fleet }, lines };
  }

  const metricsOf = async (url: string) => await (await fetch(`${url}/metrics`)).text();

  it(
    "a denied subject: NATS's words and what to grant, in the log at a bounded rate, GetInfo and /metrics; cleared once granted, every exit accounted",
    async () => {
      const { s, lines } = await publishing("h1", { stream: "PERM", prefix: "perm" });
      const consumer = collectFleet({
        servers: nats.url,
        connectOptions: { user: "admin", pass: "admin-pw" },
        stream: "PERM",
        subjectPrefix: "perm",
        durable: "watcher",
        deliver: "all",
        ackWaitMs: 2000,
      });
      try {
        await eventually(() => s.fleet.state().failing === "permission", 10_000);
        const started = Date.now();
        await sleep(3500);
        const failing = lines.filter((l) => l.startsWith("warning fleet: publishing to NATS"));
        expect(failing[0]).toContain(`Permissions Violation for Publish to "perm.h1.exits.`);
        expect(failing[0]).toContain("let its NATS user publish to perm.h1.exits.>");
        // Repeated while it lasts, about once per problemLogMs, not once per failed message.
        const failures = s.fleet.state().failures["permission"]!;
        expect(failing.length).toBeGreaterThanOrEqual(3);
        expect(failing.length).toBeLessThanOrEqual((Date.now() - started) / 1000 + 3);
        expect(failures).toBeGreaterThan(failing.length * 4);
        expect(failing.slice(1).every((l) => l.includes("still fails after") && l.includes("Permissions"))).toBe(true);
        expect(lines.join("\n")).not.toContain("tw-s3cret-pw");

        const info = await s.client.getInfo({});
        expect(info.fleet?.lastError).toContain("Permissions Violation for Publish");
        const m = await metricsOf(s.url);
        expect(m).toMatch(/^taskwire_fleet_publish_failing\{reason="permission"\} 1$/m);
        expect(m).toMatch(/^taskwire_fleet_publish_failures_total\{reason="permission"\} [1-9]\d*$/m);

        natsConf(conf, true);
        await nats.reload();
        await eventually(() => s.fleet.state().failing === "" && s.fleet.state().pending === 0, 15_000);
        expect(lines.some((l) => /^info fleet: publishing to NATS again after \d+ s .*\(last: permission\)/.test(l)))
          .toBe(true);
        expect((await s.client.getInfo({})).fleet?.lastError).toBe("");
        expect(await metricsOf(s.url)).toMatch(/^taskwire_fleet_publish_failing\{reason="none"\} 0$/m);

        await stopFleetServer(s);
        const state = s.fleet.state();
        const t = await tallied(consumer.events, "h1", state.produced);
        // Every seq exactly once and in seq order: received + lost = produced, the drops as exact loss markers. The
        // run's first messages failed, so the first the stream holds were sent again (Taskwire-Resent); taken as a
        // mid-batch start, they came each message at once, seq 5 after 1 (the SDK's _fleet-order.ts).
        expect(t.errors).toEqual([]);
        expect(t.received + t.lost).toBe(state.produced);
        expect(t.lost).toBe(state.dropped);
        expect(state.dropped).toBeGreaterThan(0);
      } finally {
        await consumer.stop().catch(() => {});
        await stopFleetServer(s).catch(() => {});
        natsConf(conf, false);
        // The next test connects as tw at once: it was refused (Authorization Violation) mid-reload, after a connect
        // that had gone through before the reload began; reload() now waits for nats-server to say it is done.
        await nats.reload();
      }
    },
    60_000,
  );

  it(
    "a stream sealed, then deleted while running: each said with what to do; publishing resumes once it is made again",
    async () => {
      const { s, lines } = await publishing("h2", { stream: "SEAL", prefix: "seal" });
      const admin = await connect({ servers: nats.url, user: "admin", pass: "admin-pw" });
      try {
        const jsm = await jetstreamManager(admin);
        await eventually(() => s.fleet.state().published > 100, 10_000);
        const config = (await jsm.streams.info("SEAL")).config;
        // Sealing is a config update JetStream takes (one way); the client's update type leaves it out.
        await jsm.streams.update("SEAL", { ...config, sealed: true } as Parameters<typeof jsm.streams.update>[1]);
        await eventually(() => s.fleet.state().failing === "sealed", 10_000);
        expect(lines.find((l) => l.includes("fails: stream SEAL is sealed"))).toContain("delete it");
        expect(await metricsOf(s.url)).toMatch(/^taskwire_fleet_publish_failing\{reason="sealed"\} 1$/m);

        await jsm.streams.delete("SEAL");
        await eventually(() => lines.some((l) => l.includes("no JetStream stream takes seal.h2.exits.")), 10_000);
        expect(s.fleet.state().failing).toBe("no-stream");
        expect(lines.find((l) => l.includes("no JetStream stream takes seal.h2.exits."))).toContain("was deleted");

        await jsm.streams.add({ ...config, sealed: false });
        await eventually(() => s.fleet.state().failing === "" && s.fleet.state().pending === 0, 15_000);
        expect(lines.some((l) => /^info fleet: publishing to NATS again after/.test(l))).toBe(true);
        expect(s.fleet.state().failures).toMatchObject({ sealed: expect.any(Number), "no-stream": expect.any(Number) });
      } finally {
        await admin.close();
        await stopFleetServer(s);
      }
    },
    60_000,
  );
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
