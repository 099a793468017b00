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
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { startServer, type Running } from "./helpers.ts";

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
if (missing !== undefined && process.env["TASKWIRE_REQUIRE_INTEROP"] === "1") throw new Error(`TASKWIRE_REQUIRE_INTEROP=1 but ${missing} is missing`);

describe.skipIf(missing !== undefined)(missing === undefined ? "python3-grpcio against the one port" : `python3-grpcio interop SKIPPED: needs ${missing}`, () => {
  let running: Running;
  let source: SimSource;
  let stubs: string;
  beforeAll(async () => {
    stubs = mkdtempSync(join(tmpdir(), "taskwire-pystubs-"));
    const set = join(stubs, "taskwire.binpb");
    execFileSync(join(root, "node_modules/.bin/buf"), ["build", "-o", set], { cwd: root });
    // grpc_tools.protoc.main directly: `python3 -m grpc_tools.protoc` adds an -I
    // that protoc refuses beside --descriptor_set_in.
    const generate = "import sys; from grpc_tools import protoc; sys.exit(protoc.main(sys.argv))";
    execFileSync(PY, ["-c", generate, `--descriptor_set_in=${set}`, `--python_out=${stubs}`, `--grpc_python_out=${stubs}`,
      "taskwire/v1/taskstats.proto", "taskwire/kernel/v1/taskstats.proto"], { cwd: stubs });
    source = createSimSource({ cpus: 8, exitRate: 500, seed: 14 }) as SimSource;
    running = await startServer(source);
  });
  afterAll(() => running?.close());

  it("calls GetInfo, GetPid, Register, SubscribeExits and Deregister; errors arrive as gRPC statuses", async () => {
    const pid = source.kernel.livePids()[0]!;
    // Asynchronously: the server runs in this process and must keep answering.
    const { stdout } = await promisify(execFile)(PY, [`${root}test/interop/grpc_client.py`, stubs, `127.0.0.1:${running.listening.port}`, String(pid)], { timeout: 60_000 });
    const out = JSON.parse(stdout);
    expect(out.info).toEqual({ source: "sim", possible_cpus: "0-7", version: 16 });
    expect(out.pid).toMatchObject({ ac_pid: pid, has_comm: true });
    expect(out.bad_mask.code).toBe("INVALID_ARGUMENT");
    expect(out.bad_mask.details).toContain("possible CPUs are 0-7");
    expect(out.bad_mask.detail).toEqual({ reason: "ERROR_REASON_INVALID_CPUMASK", metadata: { errno: "EINVAL" } });
    expect(out.no_task.code).toBe("NOT_FOUND");
    expect(out.no_task.detail).toEqual({ reason: "ERROR_REASON_TASK_NOT_FOUND", metadata: { pid: "4000000" } });
    expect(out.register).toEqual({ cpumask: "0-7", id_len: 36 });
    expect(out.events.length).toBeGreaterThanOrEqual(10);
    expect(out.events.map((e: { seq: number }) => e.seq).slice(0, 10)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(out.events.every((e: { kind: string; comm: string }) => e.kind === "exit" && e.comm.length > 0)).toBe(true);
    expect(out.deregister).toBe("");
  }, 90_000);
});
