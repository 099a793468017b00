/**
 * The fleet publisher against a real nats-server when something is wrong:
 * no server at the URL, refused credentials, an existing stream that cannot
 * take taskwire's records. Each is a clear error at start (and `taskwire
 * serve --nats` exits 1 saying it); a secret never appears in a message.
 * Also: GetInfo and /metrics show the publisher's state.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager, RetentionPolicy } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { NatsConnectError, startFleetPublisher, StreamConfigError } from "../src/fleet/publisher.ts";
import { fleetServer, haveNatsServer, type NatsServer, startNats, stopFleetServer } from "./fleet-nats.ts";
import { eventually, spawnServer } from "./helpers.ts";

const root = new URL("..", import.meta.url).pathname;
const bin = `${root}bin/taskwire.js`;
const TOKEN = "s3cret-fleet-token-7d1f";

function secretFile(content: string): string {
  const file = join(mkdtempSync(join(tmpdir(), "taskwire-nats-secret-")), "token");
  writeFileSync(file, `${content}\n`, { mode: 0o600 });
  return file;
}

async function serve(...args: string[]): Promise<{ code: number; err: string }> {
  try {
    const r = await promisify(execFile)("node", [bin, "serve", "--source", "sim", "--port", "0", ...args], {
      cwd: root,
      timeout: 20_000,
    });
    return { code: 0, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stderr: string };
    return { code: x.code, err: x.stderr };
  }
}

describe.skipIf(!haveNatsServer)("fleet publisher errors (needs /usr/sbin/nats-server)", () => {
  let nats: NatsServer;
  let guarded: NatsServer;
  beforeAll(async () => {
    [nats, guarded] = await Promise.all([startNats(), startNats(["--auth", TOKEN])]);
  });
  afterAll(async () => {
    await Promise.all([nats?.close(), guarded?.close()]);
  });

  it("no server at the URL: NatsConnectError naming it", async () => {
    await nats.kill();
    try {
      const err = await startFleetPublisher({ servers: nats.url }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NatsConnectError);
      expect((err as Error).message).toContain(`cannot connect to NATS at ${nats.url}`);
    } finally {
      await nats.restart();
    }
  }, 20_000);

  it("a wrong token is refused, and the token is never shown; the right one connects", async () => {
    const wrong = await startFleetPublisher({ servers: guarded.url, tokenFile: secretFile("wrong-token") })
      .catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(NatsConnectError);
    expect((wrong as Error).message).toMatch(/authorization/i);
    expect((wrong as Error).message).not.toContain("wrong-token");
    const fleet = await startFleetPublisher({ servers: guarded.url, tokenFile: secretFile(TOKEN) });
    expect(fleet.state().connected).toBe(true);
    await fleet.close();
  }, 20_000);

  it("credentials in the URL are sent (the NATS client reads none from a URL), percent-encoded or not", async () => {
    const withToken = await startFleetPublisher({ servers: guarded.url.replace("nats://", `nats://${TOKEN}@`) });
    expect(withToken.state().connected).toBe(true);
    await withToken.close();
    const users = await startNats(["--user", "u", "--pass", "p@ss/w,rd"]);
    try {
      const url = users.url.replace("nats://", `nats://u:${encodeURIComponent("p@ss/w,rd")}@`);
      const fleet = await startFleetPublisher({ servers: url });
      expect(fleet.state().connected).toBe(true);
      await fleet.close();
      const wrong = await startFleetPublisher({ servers: users.url.replace("nats://", "nats://u:nope@") })
        .catch((e: unknown) => e);
      expect(wrong).toBeInstanceOf(NatsConnectError);
      expect((wrong as Error).message).not.toContain("nope");
      // Credentials in a URL and in a file: which one was meant is not guessed.
      const both = await startFleetPublisher({ servers: url, tokenFile: secretFile(TOKEN) }).catch((e: unknown) => e);
      expect(both).toBeInstanceOf(RangeError);
      expect((both as Error).message).toMatch(
        /credentials in a --nats URL and in --nats-creds, --nats-nkey or --nats-token-file/,
      );
    } finally {
      await users.close();
    }
  }, 30_000);

  it("user:password in the URL is not echoed in errors", async () => {
    const url = guarded.url.replace("nats://", "nats://me:pa55word@");
    const err = await startFleetPublisher({ servers: url }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatsConnectError);
    expect((err as Error).message).not.toContain("pa55word");
  }, 20_000);

  it(
    "an existing stream without taskwire's subjects, or with another retention: StreamConfigError saying what to do",
    async () => {
      const nc = await connect({ servers: nats.url });
      try {
        const jsm = await jetstreamManager(nc);
        await jsm.streams.add({ name: "OTHER_SUBJECTS", subjects: ["other.>"] });
        await jsm.streams.add({
          name: "OTHER_RETENTION",
          subjects: ["ret.*.exits.*"],
          retention: RetentionPolicy.Interest,
        });
        await jsm.streams.add({ name: "WIDER", subjects: ["wide.>"] });
      } finally {
        await nc.close();
      }
      const subjects = await startFleetPublisher({ servers: nats.url, stream: "OTHER_SUBJECTS" }).catch((e: unknown) =>
        e
      );
      expect(subjects).toBeInstanceOf(StreamConfigError);
      expect((subjects as Error).message).toContain("not taskwire.*.exits.*");
      const retention = await startFleetPublisher({ servers: nats.url, stream: "OTHER_RETENTION", prefix: "ret" })
        .catch((e: unknown) => e);
      expect(retention).toBeInstanceOf(StreamConfigError);
      expect((retention as Error).message).toContain("interest retention, not limits");
      // A stream whose subjects cover taskwire's is fine, its limits kept (with a warning).
      const warnings: string[] = [];
      const wide = await startFleetPublisher({
        servers: nats.url,
        stream: "WIDER",
        prefix: "wide",
        log: (_l, t) => warnings.push(t),
      });
      await wide.close();
      expect(warnings.join("\n")).toMatch(/kept as it is: its max age is 0 ms/);
      // A new stream whose subjects another stream holds: the server only says they overlap; this names the other.
      const clash = await startFleetPublisher({ servers: nats.url, stream: "CLASH", prefix: "wide" })
        .catch((e: unknown) => e);
      expect(clash).toBeInstanceOf(StreamConfigError);
      expect((clash as Error).message).toMatch(
        /--nats-stream CLASH cannot be made: its subjects wide\.\*\.exits\.\* overlap stream WIDER's .*--nats-stream WIDER/,
      );
    },
    20_000,
  );

  it("GetInfo and /metrics show the publisher: connected, published, pending, dropped, unsent", async () => {
    const s = await fleetServer(nats.url, "info-host", { fleet: { stream: "INFO_TEST", prefix: "info" } });
    try {
      await eventually(() => s.fleet.state().published > 100, 10_000);
      const info = await s.client.getInfo({});
      expect(info.fleet?.connected).toBe(true);
      expect(info.fleet?.published).toBeGreaterThan(0n);
      expect(info.fleet?.stream).toBe("INFO_TEST");
      expect(info.fleet?.host).toBe("info-host");
      expect(info.fleet?.unsent).toBe(0n);
      const metrics = await (await fetch(`${s.url}/metrics`)).text();
      expect(metrics).toMatch(/^taskwire_fleet_connected 1$/m);
      expect(metrics).toMatch(/^taskwire_fleet_published_total \d+$/m);
      expect(metrics).toMatch(/^taskwire_fleet_dropped_total 0$/m);
      expect(metrics).toMatch(/^taskwire_fleet_unsent_total 0$/m);
      expect(metrics).toMatch(/^taskwire_fleet_pending_messages \d+$/m);
    } finally {
      await stopFleetServer(s);
    }
  }, 20_000);

  describe.skipIf(!existsSync(`${root}dist/src/cli/main.js`))("taskwire serve --nats (dist/: npm run build)", () => {
    it("exits 1 with a clear message when NATS is not there or refuses the token", async () => {
      await nats.kill();
      try {
        const down = await serve("--nats", nats.url);
        expect(down.code).toBe(1);
        expect(down.err).toContain(`cannot connect to NATS at ${nats.url}`);
      } finally {
        await nats.restart();
      }
      const refused = await serve("--nats", guarded.url, "--nats-token-file", secretFile("nope-token"));
      expect(refused.code).toBe(1);
      expect(refused.err).toMatch(/authorization/i);
      expect(refused.err).not.toContain("nope-token");
      const usage = await serve("--nats", nats.url, "--nats-subject-prefix", "bad.*");
      expect(usage.code).toBe(2);
    }, 60_000);

    it("publishes, configured by flags and TASKWIRE_* variables", async () => {
      // --nats as a TASKWIRE_* variable (every serve flag is one), the stream as a flag.
      process.env["TASKWIRE_NATS"] = nats.url;
      const s = await spawnServer(
        "node",
        [bin, "serve", "--source", "sim", "--port", "0", "--nats-stream", "CLI_TEST"],
        root,
      )
        .finally(() => delete process.env["TASKWIRE_NATS"]);
      try {
        const info = await eventually(async () => {
          const r = await fetch(`${s.url}/metrics`);
          return /^taskwire_fleet_published_total [1-9]/m.test(await r.text());
        }, 15_000);
        expect(info).toBeUndefined();
        const got = await (await fetch(`${s.url}/metrics`)).text();
        expect(got).toMatch(/^taskwire_fleet_connected 1$/m);
      } finally {
        s.stop();
      }
    }, 30_000);
  });
});
