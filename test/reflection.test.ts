/** gRPC server reflection (v1, v1alpha): buf curl calls taskwire without the .proto files. */
import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { ServerReflectionRequestSchema } from "../src/gen/grpc/reflection/v1/reflection_pb.ts";
import { TaskStats } from "../src/gen/taskwire/v1/taskstats_pb.ts";
import { createReflector } from "../src/rpc/reflection.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { type Running, startServer } from "./helpers.ts";

const root = new URL("..", import.meta.url).pathname;
const buf = `${root}node_modules/.bin/buf`;
let running: Running;
beforeAll(async () => {
  running = await startServer(createSimSource({ cpus: 8, exitRate: 300, seed: 3 }));
});
afterAll(() => running.close());

const curl = (args: string[]) => promisify(execFile)(buf, ["curl", "--http2-prior-knowledge", ...args], { cwd: "/" }); // no proto/ in reach

describe("reflection through buf curl (no schema given)", () => {
  it("lists the methods", async () => {
    const { stdout } = await curl(["--protocol", "grpc", "--list-methods", running.url]);
    expect(stdout.trim().split("\n")).toEqual(
      expect.arrayContaining([
        "taskwire.v1.TaskStats/GetInfo",
        "taskwire.v1.TaskStats/SubscribeExits",
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      ]),
    );
  });

  it.each(["grpc-v1", "grpc-v1alpha"])(
    "calls GetInfo and Register with %s reflection, errors included",
    async (reflect) => {
      const info = JSON.parse(
        (await curl([
          "--protocol",
          "grpc",
          "--reflect-protocol",
          reflect,
          `${running.url}/taskwire.v1.TaskStats/GetInfo`,
        ])).stdout,
      );
      expect(info).toMatchObject({ source: "sim", possibleCpus: "0-7" });
      const bad = await curl([
        "--protocol",
        "grpc",
        "--reflect-protocol",
        reflect,
        "-d",
        '{"cpumask":"9"}',
        `${running.url}/taskwire.v1.TaskStats/Register`,
      ])
        .then(() => "", (e: { stderr: string }) => e.stderr);
      expect(bad).toMatch(/invalid_argument.*possible CPUs are 0-7/s);
    },
  );

  it("streams SubscribeExits over Connect on HTTP/2, described by reflection", async () => {
    const child = spawn(buf, [
      "curl",
      "--http2-prior-knowledge",
      "-d",
      '{"cpumask":"0-7"}',
      `${running.url}/taskwire.v1.TaskStats/SubscribeExits`,
    ], { cwd: "/" });
    let out = "";
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no exit from buf curl: ${out}`)), 20_000);
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        if (out.includes('"acComm"')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    child.kill();
    expect(out).toContain('"listenerId"');
  });
});

describe("the reflector", () => {
  const answer = createReflector([TaskStats]);
  const ask = (init: Parameters<typeof create<typeof ServerReflectionRequestSchema>>[1]) =>
    answer(create(ServerReflectionRequestSchema, init));

  it("finds the file of a service, a method and a message, with its imports", () => {
    for (const symbol of ["taskwire.v1.TaskStats", "taskwire.v1.TaskStats.GetPid", "taskwire.kernel.v1.TaskStats"]) {
      const r = ask({ messageRequest: { case: "fileContainingSymbol", value: symbol } });
      expect(r.case, symbol).toBe("fileDescriptorResponse");
    }
    const r = ask({ messageRequest: { case: "fileByFilename", value: "taskwire/v1/taskstats.proto" } });
    expect(r.case === "fileDescriptorResponse" && r.value.fileDescriptorProto.length).toBe(3); // the service file, the struct file and google/protobuf/timestamp.proto it imports
  });

  it("answers NOT_FOUND for unknown symbols and files", () => {
    for (
      const req of [{ case: "fileContainingSymbol" as const, value: "no.Such" }, {
        case: "fileByFilename" as const,
        value: "x.proto",
      }]
    ) {
      const r = ask({ messageRequest: req });
      expect(r.case === "errorResponse" && r.value.errorCode).toBe(Code.NotFound);
    }
  });
});
