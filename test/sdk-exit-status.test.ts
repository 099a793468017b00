/**
 * The SDK's wait-status helpers: describeExit reads exits and signals as
 * wait(2) does, describes the statuses no exit has (stopped, continued) as
 * such rather than as a made-up signal 127, and refuses a number that is no
 * wait status instead of reading its low 16 bits (65536 as `exit 0`).
 */
import { create } from "@bufbuild/protobuf";
import {
  describeExit,
  ExitEventSchema,
  exitStatusText,
  isFailedExit,
  signalName,
  TaskStatsSchema,
} from "@taskwire/client";
import { describe, expect, it } from "vitest";
import { formatEvent } from "../src/cli/format.ts";
import { formatReport } from "../src/cli/report.ts";

describe("describeExit", () => {
  it("reads an exit code, and a signal with or without a core", () => {
    expect(describeExit(0)).toEqual({ kind: "exited", code: 0, text: "exit 0" });
    expect(describeExit(3 << 8)).toEqual({ kind: "exited", code: 3, text: "exit 3" });
    expect(describeExit(255 << 8)).toEqual({ kind: "exited", code: 255, text: "exit 255" });
    expect(describeExit(9)).toEqual({
      kind: "signaled",
      signal: 9,
      signalName: "SIGKILL",
      coreDumped: false,
      text: "signal 9 (SIGKILL)",
    });
    expect(describeExit(0x80 | 11).text).toBe("signal 11 (SIGSEGV, core)");
    expect(describeExit(34 + 3).text).toBe("signal 37 (SIGRTMIN+3)");
  });

  it("describes a low byte of 0x7f as a stopped task (its stop signal in bits 8-15), not as signal 127", () => {
    expect(describeExit((19 << 8) | 0x7f)).toEqual({
      kind: "stopped",
      signal: 19,
      signalName: "SIGSTOP",
      text: "stopped by signal 19 (SIGSTOP)",
    });
    expect(describeExit(0x7f)).toEqual({
      kind: "stopped",
      signal: 0,
      signalName: "signal 0",
      text: "stopped by signal 0 (signal 0)",
    });
    expect(describeExit(0xffff)).toEqual({ kind: "continued", text: "continued" });
  });

  it("throws RangeError for a number that is no wait status, naming the range", () => {
    for (const bad of [65536, 0x10000 | (3 << 8), 0xffffffff, -1, 1.5, Number.NaN, Infinity]) {
      expect(() => describeExit(bad), String(bad)).toThrow(RangeError);
    }
    expect(() => describeExit(65536)).toThrow(
      /must be a wait status, an integer in 0\.\.65535 \(16 bits\), got 65536$/,
    );
    // Low 7 bits of 0x7f with bit 7 set: only 0xffff (continued) has them.
    expect(() => describeExit(0x01ff)).toThrow(/status 0x1ff is no wait status/);
    expect(() => describeExit(0xff)).toThrow(RangeError);
  });

  it("names signal 0 as a number, as any signal without a name", () => {
    expect(signalName(0)).toBe("signal 0");
    expect(signalName(100)).toBe("signal 100");
    expect(isFailedExit(0)).toBe(false);
  });
});

describe("the CLI, and exitStatusText (the dashboard's row), given a status no wait status can be", () => {
  // A server relays the kernel's u32 as it is, and a fleet publisher may send anything.
  const event = (acExitcode: number) =>
    formatEvent(create(ExitEventSchema, {
      seq: 1n,
      cpu: 1,
      event: { case: "exit", value: { pid: 7, tgid: 7, pidStats: { acComm: "x", acExitcode } } },
    }));

  it("still show the event, saying so, instead of throwing", () => {
    expect(event(65536)).toContain(" exit ? (status 65536 is no wait status) ");
    expect(event((19 << 8) | 0x7f)).toContain(" stopped by signal 19 (SIGSTOP) ");
    expect(formatReport(create(TaskStatsSchema, { acComm: "x", acExitcode: 65536 }))).toMatch(
      /status exit \? \(status 65536 is no wait status\)/,
    );
    expect(exitStatusText(65536)).toBe("exit ? (status 65536 is no wait status)");
    expect(exitStatusText(3 << 8)).toBe("exit 3");
  });
});
