/**
 * What authentication costs: unary calls/s (GetInfo, 16 in flight, from a
 * client process) and stream events/s (one SubscribeExits stream, producer
 * as in e2e.ts) against the same server configuration with and without a
 * bearer-token authenticator, in alternating rounds of the same run.
 * Admission limits are lifted in both, so the rate limit is not what is measured.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createAuditLog } from "../src/auth/audit.ts";
import { createAuthenticator } from "../src/auth/authenticator.ts";
import { hashToken, newToken } from "../src/auth/tokens.ts";
import { DEFAULT_LIMITS } from "../src/core/limits.ts";
import { listenNode } from "../src/runtime/node.ts";
import { createServer, type ServerOptions } from "../src/server/server.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { NO_ADMISSION_LIMITS, produceWhileDrained, sleep, startCounter } from "./_shared.ts";

async function withServer<T>(
  auth: ServerOptions["authenticator"],
  produce: boolean,
  run: (url: string) => Promise<T>,
): Promise<T> {
  const source = createSimSource({ cpus: 8, exitRate: 0, seed: 9 }) as SimSource;
  const server = createServer({
    source,
    admission: NO_ADMISSION_LIMITS,
    audit: createAuditLog({ write: () => {} }),
    ...(auth && { authenticator: auth }),
  });
  const listening = await listenNode(server, { port: 0 });
  const stopProducing = produce ? produceWhileDrained(source, server, DEFAULT_LIMITS.defaultBuffer) : () => {};
  try {
    return await run(listening.url);
  } finally {
    stopProducing();
    await listening.close();
  }
}

async function unaryRate(url: string, token: string | undefined, ms: number): Promise<number> {
  const script = new URL("./_unary-caller.js", import.meta.url).pathname;
  const env = { ...process.env, ...(token && { BENCH_TOKEN: token }) };
  const { stdout } = await promisify(execFile)(process.execPath, [script, url, "16", String(ms)], { env });
  return JSON.parse(stdout).perSecond as number;
}

async function streamRate(url: string, token: string | undefined, ms: number): Promise<number> {
  const c = await startCounter(url, 1, "read", { env: token ? { BENCH_TOKEN: token } : {} });
  await sleep(300);
  const a = await c.mark(), t0 = performance.now();
  await sleep(ms);
  const b = await c.mark();
  c.stop();
  return (b.events - a.events) / ((performance.now() - t0) / 1000);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Rows: per measure, the median with auth off and on over `rounds` alternating rounds, and the overhead. */
export async function benchAuth(o: { rounds: number; windowMs: number }): Promise<string[][]> {
  const token = newToken();
  const file = join(mkdtempSync(join(tmpdir(), "taskwire-bench-auth-")), "auth.json");
  writeFileSync(
    file,
    JSON.stringify({
      principals: { bench: { roles: ["read", "subscribe"] } },
      tokens: { [hashToken(token)]: "bench" },
    }),
  );
  const authenticator = createAuthenticator({ tokenFile: file });
  const measures = [
    ["unary GetInfo calls/s (16 in flight, Connect/HTTP/1.1)", unaryRate, false],
    ["stream events/s (one SubscribeExits, Connect/HTTP/1.1)", streamRate, true],
  ] as const;
  const rows = [["measure", "auth off (median)", "bearer token (median)", "overhead", "rounds (off / on)"]];
  for (const [name, measure, produce] of measures) {
    const off: number[] = [], on: number[] = [];
    for (let r = 0; r < o.rounds; r++) {
      off.push(await withServer(undefined, produce, (url) => measure(url, undefined, o.windowMs)));
      on.push(await withServer(authenticator, produce, (url) => measure(url, token, o.windowMs)));
    }
    const [a, b] = [median(off), median(on)];
    rows.push([
      name,
      String(Math.round(a)),
      String(Math.round(b)),
      `${(((a - b) / a) * 100).toFixed(1)}%`,
      `${off.map(Math.round).join(", ")} / ${on.map(Math.round).join(", ")}`,
    ]);
  }
  return rows;
}
