/** Service semantics that need a source to misbehave: a kernel that refuses to register CPUs. */
import { Code, ConnectError } from "@taskwire/client";
import { afterEach, describe, expect, it } from "vitest";
import { SourceUnavailableError } from "../src/sources/source.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { type Running, startServer } from "./helpers.ts";

let running: Running | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

/** The sim source, except that the next watch change the kernel is asked for fails. */
async function refusingOnce() {
  const source = createSimSource({ cpus: 8, exitRate: 0 }) as SimSource;
  let refuse = false;
  source.synced = async () => {
    if (!refuse) return;
    refuse = false;
    throw new SourceUnavailableError("the kernel did not register CPU 3 for exit records: EPERM");
  };
  running = await startServer(source);
  return { client: running.client, server: running.server, refuseNext: () => (refuse = true) };
}

const codeOf = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => ConnectError.from(e).code);

describe("a kernel that refuses a registration", () => {
  it("Register of a new listener answers UNAVAILABLE and keeps nothing", async () => {
    const { client, server, refuseNext } = await refusingOnce();
    refuseNext();
    expect(await codeOf(client.register({ cpumask: "2-3" }))).toBe(Code.Unavailable);
    expect(server.stats()).toMatchObject({ listeners: 0, watchedCpus: "" });
  });

  it("adding CPUs to a listener takes back only the CPUs that were added", async () => {
    const { client, server, refuseNext } = await refusingOnce();
    const { listenerId } = await client.register({ cpumask: "0-1" });
    refuseNext();
    expect(await codeOf(client.register({ listenerId, cpumask: "1-3" }))).toBe(Code.Unavailable);
    expect(server.stats().watchedCpus).toBe("0-1");
    expect((await client.getInfo({ listeners: true })).listenerDetails[0]!.cpumask).toBe("0-1");
  });

  it("an ephemeral subscription is refused without leaving its listener behind", async () => {
    const { client, server, refuseNext } = await refusingOnce();
    refuseNext();
    const drain = async () => {
      for await (const _ of client.subscribeExits({ cpumask: "4" })) { /* drain */ }
    };
    expect(await codeOf(drain())).toBe(Code.Unavailable);
    expect(server.stats()).toMatchObject({ listeners: 0, watchedCpus: "" });
  });
});
