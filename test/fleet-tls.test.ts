/**
 * The fleet's NATS connections over TLS, against a real nats-server with a
 * certificate from a CA made here (openssl): the publisher's (serve --nats,
 * and watch --nats, through connectNats) and the SDK's watchFleet. nats.js
 * upgrades the socket naming no host, and for an IP URL no servername, so
 * Node checked every certificate against "localhost": one for 127.0.0.1 was
 * refused at tls://127.0.0.1 ("Host: localhost. is not cert's CN").
 */
import { rmSync } from "node:fs";
import { checkServerIdentity } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { watchFleet } from "@taskwire/client";
import { connectNats, type NatsSettings } from "../src/fleet/_connect.ts";
import { checkNatsServerIdentity, namesToCheck } from "../src/fleet/_tls-identity.ts";
import { namesToCheck as sdkNamesToCheck, natsServerIdentity } from "../clients/ts/src/_nats-tls.ts";
import {
  collectFleet,
  fleetServer,
  haveNatsServer,
  type NatsServer,
  startNats,
  stopFleetServer,
} from "./fleet-nats.ts";
import { eventually } from "./helpers.ts";
import { createTestCa, type TestCa } from "./test-ca.ts";

let ca: TestCa, caFile: string;

function makeCa(): void {
  ca = createTestCa("taskwire-test-ca", { prefix: "taskwire-nats-tls-" });
  caFile = ca.certFile;
}

/** A server certificate signed by the CA, with this subjectAltName; its files' paths. */
function serverCert(name: string, san: string): { cert: string; key: string } {
  const s = ca.sign(name, { cn: "nats-test", san });
  return { cert: s.certFile, key: s.keyFile };
}

/** connectNats's outcome: "ok", or its error's message. */
async function publisherConnects(s: NatsSettings): Promise<string> {
  try {
    await (await connectNats(s)).close();
    return "ok";
  } catch (err) {
    return (err as Error).message;
  }
}

/** watchFleet's outcome as far as connecting (it then finds no stream, which is no TLS matter): "ok", or its error. */
async function watchFleetConnects(servers: string, tls?: { caFile: string }): Promise<string> {
  const it = watchFleet({ servers, stream: "NO_SUCH_STREAM", ...(tls && { connectOptions: { tls } }) });
  const err = await it.next().then(() => undefined, (e: unknown) => e as Error);
  await it.return?.();
  return err === undefined || !err.message.startsWith("watchFleet: cannot connect") ? "ok" : err.message;
}

describe.skipIf(!haveNatsServer)("NATS over TLS (needs /usr/sbin/nats-server and openssl)", () => {
  const servers: NatsServer[] = [];
  const tlsNats = async (name: string, san: string) => {
    const { cert, key } = serverCert(name, san);
    const s = await startNats(["--tls", "--tlscert", cert, "--tlskey", key]);
    servers.push(s);
    return s;
  };
  let ipOnly: NatsServer, dnsOnly: NatsServer, both: NatsServer, other: NatsServer;
  beforeAll(async () => {
    makeCa();
    [ipOnly, dnsOnly, both, other] = await Promise.all([
      tlsNats("ip", "IP:127.0.0.1"),
      tlsNats("dns", "DNS:localhost"),
      tlsNats("both", "IP:127.0.0.1,DNS:localhost"),
      tlsNats("other", "IP:10.1.2.3,DNS:nats.example"),
    ]);
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
    rmSync(ca.dir, { recursive: true, force: true });
  });

  it("a certificate for 127.0.0.1 is taken at tls://127.0.0.1 and nats://127.0.0.1, by the publisher and watchFleet", async () => {
    for (const url of [`tls://127.0.0.1:${ipOnly.port}`, `nats://127.0.0.1:${ipOnly.port}`]) {
      expect(await publisherConnects({ servers: url, caFile })).toBe("ok");
      expect(await watchFleetConnects(url, { caFile })).toBe("ok");
    }
  });

  it("a certificate for localhost is taken at tls://localhost, and at the loopback address (as before)", async () => {
    for (const url of [`tls://localhost:${dnsOnly.port}`, `tls://127.0.0.1:${dnsOnly.port}`]) {
      expect(await publisherConnects({ servers: url, caFile })).toBe("ok");
      expect(await watchFleetConnects(url, { caFile })).toBe("ok");
    }
    for (const url of [`tls://localhost:${both.port}`, `tls://127.0.0.1:${both.port}`]) {
      expect(await publisherConnects({ servers: url, caFile })).toBe("ok");
      expect(await watchFleetConnects(url, { caFile })).toBe("ok");
    }
  });

  it("a certificate without the address connected to is refused, naming the address and the SAN to add", async () => {
    const url = `tls://127.0.0.1:${other.port}`;
    const why = "the server's TLS certificate is not for 127.0.0.1, the address connected to (it holds " +
      "IP Address:10.1.2.3, DNS:nats.example): add subjectAltName IP:127.0.0.1 to the certificate";
    expect(await publisherConnects({ servers: url, caFile })).toContain(`cannot connect to NATS at ${url}: ${why}`);
    expect(await watchFleetConnects(url, { caFile })).toContain(`cannot connect to NATS at ${url}: ${why}`);
    // A name the certificate does not hold: the name, and DNS:.
    const byName = `tls://localhost:${ipOnly.port}`;
    expect(await publisherConnects({ servers: byName, caFile })).toContain(
      "not for localhost, the host connected to (it holds IP Address:127.0.0.1): add subjectAltName DNS:localhost",
    );
  });

  it("a tls:// URL requires TLS: a server without it is refused, not spoken to in plain text", async () => {
    const plain = await startNats();
    servers.push(plain);
    const url = `tls://127.0.0.1:${plain.port}`;
    expect(await publisherConnects({ servers: url })).toContain("server does not support 'tls'");
    expect(await watchFleetConnects(url)).toContain("server does not support 'tls'");
    expect(await publisherConnects({ servers: `nats://127.0.0.1:${plain.port}` })).toBe("ok");
  });

  it("exits published over TLS to tls://127.0.0.1 reach watchFleet over TLS", async () => {
    const url = `tls://127.0.0.1:${ipOnly.port}`;
    const s = await fleetServer(url, "tls-host", { fleet: { caFile, stream: "TLS_TEST", prefix: "tls" } });
    const consumer = collectFleet({
      servers: url,
      connectOptions: { tls: { caFile } },
      stream: "TLS_TEST",
      subjectPrefix: "tls",
      deliver: "all",
    });
    try {
      await eventually(() => consumer.events.length > 100, 10_000);
      expect(consumer.events[0]!.host).toBe("tls-host");
    } finally {
      await stopFleetServer(s);
      await consumer.stop();
    }
  }, 20_000);
});

describe("the certificate check's names", () => {
  const upgraded = (remoteAddress: string, servername = "") => ({ servername, socket: { remoteAddress } });
  const cases: [Parameters<typeof namesToCheck>[0], string, string[]][] = [
    [upgraded("10.0.0.5"), "localhost", ["10.0.0.5"]], // Node's fallback at an IP URL: the address
    [upgraded("127.0.0.1"), "localhost", ["127.0.0.1", "localhost"]], // loopback is localhost too
    [upgraded("::1"), "localhost", ["::1", "localhost"]],
    [upgraded("10.0.0.5"), "10.0.0.5", ["10.0.0.5"]], // Bun names the IP itself
    [upgraded("10.0.0.5"), "nats.example", ["10.0.0.5", "nats.example"]], // a name dialled unresolved
    [upgraded("10.0.0.5", "nats.example"), "nats.example", ["nats.example"]], // nats.js's servername
    [undefined, "localhost", ["localhost"]], // no socket to read: as Node would
    [{ servername: "", socket: {} }, "localhost", []], // its address unreadable (closed): Node's fallback names nothing
    [{ servername: "", socket: {} }, "10.0.0.5", ["10.0.0.5"]], // Bun's: the IP it dialled
  ];
  it.each(cases)("%j, %s: %j (the server's and the SDK's alike)", (c, host, names) => {
    expect(namesToCheck(c, host)).toEqual(names);
    expect(sdkNamesToCheck(c, host)).toEqual(names);
  });

  it("a certificate for localhost is refused from an address that is not loopback (it was taken from any)", () => {
    const cert = { subject: { CN: "x" }, subjectaltname: "DNS:localhost" } as never;
    const sdkCheck = natsServerIdentity(checkServerIdentity as never);
    for (const check of [checkNatsServerIdentity, sdkCheck]) {
      expect(check.call(upgraded("10.0.0.5"), "localhost", cert)?.message).toMatch(
        /^the server's TLS certificate is not for 10\.0\.0\.5, the address connected to \(it holds DNS:localhost\): add subjectAltName IP:10\.0\.0\.5/,
      );
      expect(check.call(upgraded("127.0.0.1"), "localhost", cert)).toBeUndefined();
    }
  });

  it("a certificate for localhost is refused when the address connected to cannot be read (it was taken)", () => {
    // A socket closed under the handshake reads no remoteAddress, and Node then checks its fallback, "localhost".
    const cert = { subject: { CN: "x" }, subjectaltname: "DNS:localhost" } as never;
    const sdkCheck = natsServerIdentity(checkServerIdentity as never);
    for (const check of [checkNatsServerIdentity, sdkCheck]) {
      expect(check.call({ servername: "", socket: {} }, "localhost", cert)?.message).toBe(
        "the server's TLS certificate cannot be checked: the address connected to is unknown (the connection " +
          "closed during the TLS handshake)",
      );
    }
  });
});
