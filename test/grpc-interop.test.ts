/**
 * Stock gRPC interop: Python stubs generated from proto/ with Debian's
 * python3-grpc-tools, called with Debian's python3-grpcio over real gRPC.
 *
 * Debian's grpc_tools bundles protoc 3.5 (2018), whose parser rejects proto3
 * `optional`. Its code generators still work from a compiled descriptor set, so
 * buf (a devDependency) compiles proto/ and grpc_tools generates from that. That
 * protoc predates the proto3_optional flag, so each optional field appears to
 * Python inside a one-field oneof (`_ac_pid`): the same wire format and the same
 * presence (`HasField`) that proto3 optional has.
 */
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTaskwireClient, type TaskwireClient } from "@taskwire/client";
import { beforeAll, describe, expect, it } from "vitest";
import { createAuditLog } from "../src/auth/audit.ts";
import { createAuthenticator } from "../src/auth/authenticator.ts";
import { hashToken, newToken } from "../src/auth/tokens.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { eventually, type Running, startServer } from "./helpers.ts";

const root = new URL("..", import.meta.url).pathname;
const PY = "/usr/bin/python3";

function missingTools(): string | undefined {
  try {
    execFileSync(PY, ["-c", "import grpc, google.protobuf, grpc_tools.protoc"], { stdio: "pipe" });
  } catch {
    return `${PY} with grpc, protobuf and grpc_tools (Debian: python3-grpcio, python3-protobuf, python3-grpc-tools)`;
  }
  return undefined;
}

const missing = missingTools();
if (missing !== undefined && process.env["TASKWIRE_REQUIRE_INTEROP"] === "1") {
  throw new Error(`TASKWIRE_REQUIRE_INTEROP=1 but ${missing} is missing`);
}

describe.skipIf(missing !== undefined)(
  missing === undefined ? "python3-grpcio against the one port" : `python3-grpcio interop SKIPPED: needs ${missing}`,
  () => {
    let stubs: string;
    beforeAll(async () => {
      stubs = mkdtempSync(join(tmpdir(), "taskwire-pystubs-"));
      const set = join(stubs, "taskwire.binpb");
      execFileSync(join(root, "node_modules/.bin/buf"), ["build", "-o", set], { cwd: root });
      // grpc_tools.protoc.main directly: `python3 -m grpc_tools.protoc` adds an -I
      // that protoc refuses beside --descriptor_set_in.
      const generate = "import sys; from grpc_tools import protoc; sys.exit(protoc.main(sys.argv))";
      execFileSync(PY, [
        "-c",
        generate,
        `--descriptor_set_in=${set}`,
        `--python_out=${stubs}`,
        `--grpc_python_out=${stubs}`,
        "taskwire/v1/taskstats.proto",
        "taskwire/kernel/v1/taskstats.proto",
      ], { cwd: stubs });
    });

    // No exits of its own (exitRate 0): the pid handed to the client stays alive however long Python takes
    // to start under load; the test makes exits with exitNow() once the client has registered.
    async function serve(token?: string): Promise<{ running: Running; source: SimSource; client: TaskwireClient }> {
      const source = createSimSource({ cpus: 8, exitRate: 0, seed: 14 }) as SimSource;
      if (token === undefined) {
        const running = await startServer(source);
        return { running, source, client: running.client };
      }
      const file = join(stubs, "auth.json");
      writeFileSync(
        file,
        JSON.stringify({ principals: { py: { roles: ["read", "subscribe"] } }, tokens: { [hashToken(token)]: "py" } }),
      );
      const running = await startServer(source, {}, {
        authenticator: createAuthenticator({ tokenFile: file }),
        audit: createAuditLog({ write: () => {} }),
      });
      return { running, source, client: createTaskwireClient(running.url, { token }) };
    }

    it.each([["without authentication", undefined], ["with a bearer token in gRPC metadata", newToken()]])(
      "%s: calls GetInfo, GetPid, Register, SubscribeExits and Deregister; errors arrive as gRPC statuses",
      async (_name, token) => {
        const { running, source, client: sdk } = await serve(token);
        try {
          const pid = source.kernel.livePids()[0]!;
          // Asynchronously: the server runs in this process and must keep answering.
          const env = { ...process.env, ...(token !== undefined && { TASKWIRE_TOKEN: token }) };
          const client = promisify(execFile)(PY, [
            `${root}test/interop/grpc_client.py`,
            stubs,
            `127.0.0.1:${running.listening.port}`,
            String(pid),
          ], { timeout: 60_000, env });
          let ended = false;
          client.then(() => (ended = true), () => (ended = true));
          // The client registers after GetPid, then subscribes: its listener's queue holds the exits until the stream comes.
          await eventually(
            async () =>
              ended || (await sdk.getInfo({ listeners: true })).listenerDetails.length > 0 ||
              (await sdk.getInfo({})).listeners > 0,
            60_000,
          );
          source.kernel.exitNow(50);
          const { stdout } = await client;
          const out = JSON.parse(stdout);
          expect(out.info).toEqual({ source: "sim", possible_cpus: "0-7", version: 16 });
          expect(out.pid).toMatchObject({ ac_pid: pid, has_comm: true });
          expect(out.bad_mask.code).toBe("INVALID_ARGUMENT");
          expect(out.bad_mask.details).toContain("possible CPUs are 0-7");
          expect(out.bad_mask.detail).toEqual({
            reason: "ERROR_REASON_INVALID_CPUMASK",
            metadata: { errno: "ERANGE" },
          });
          expect(out.no_task.code).toBe("NOT_FOUND");
          expect(out.no_task.detail).toEqual({ reason: "ERROR_REASON_TASK_NOT_FOUND", metadata: { pid: "4000000" } });
          expect(out.register).toEqual({ cpumask: "0-7", id_len: 36 });
          expect(out.events.length).toBeGreaterThanOrEqual(10);
          expect(out.events.map((e: { seq: number }) => e.seq).slice(0, 10)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
          expect(out.events.every((e: { kind: string; comm: string }) => e.kind === "exit" && e.comm.length > 0)).toBe(
            true,
          );
          expect(out.deregister).toBe("");
          if (token !== undefined) {
            expect(out.no_token).toEqual({
              code: "UNAUTHENTICATED",
              detail: { reason: "ERROR_REASON_UNAUTHENTICATED", metadata: {} },
            });
          }
        } finally {
          await running.close();
        }
      },
      90_000,
    );
  },
);
