import { describe, expect, it } from "vitest";
import { startLineChild } from "../bench/_child.ts";
import { childCommand, within } from "../bench/_shared.ts";

// A line child that answers "ping" with a JSON line, and on "die SIGNAL" kills itself with that signal.
const SCRIPT = `
  console.log("ready");
  require("node:readline").createInterface({ input: process.stdin }).on("line", (l) => {
    if (l === "ping") console.log(JSON.stringify({ pong: true }));
    else if (l.startsWith("die ")) process.kill(process.pid, l.slice(4));
  });
`;

describe("the bench's child processes (a round that hangs fails instead)", () => {
  it("answers, then rejects what is asked of a child that has died, naming the real-time watchdog's signal", async () => {
    const [child] = await startLineChild(process.execPath, ["-e", SCRIPT], (l) => l === "ready");
    await expect(child.ask("ping")).resolves.toEqual({ pong: true });
    // The ask that kills it, and every ask after, rejects: none is left pending (the hang of the thirtieth session).
    await expect(child.ask("die SIGXCPU")).rejects.toThrow(/SIGXCPU.*RLIMIT_RTTIME.*watchdog/);
    await expect(child.ask("ping")).rejects.toThrow(/SIGXCPU/);
    await expect(child.end()).resolves.toEqual({ pong: true }); // the last line it printed, not a hang
  });

  it("kills a child that never says it is ready, and fails its start saying so", async () => {
    const start = startLineChild(process.execPath, ["-e", "setInterval(() => {}, 1000)"], (l) => l === "ready", {
      readyMs: 300,
    });
    await expect(start).rejects.toThrow(/did not say it was ready in 0.3 s/);
  });

  it("names an ordinary signal or exit code as what it is", async () => {
    const [child] = await startLineChild(process.execPath, ["-e", SCRIPT], (l) => l === "ready");
    const err = await child.ask("die SIGTERM").catch((e: Error) => e);
    expect(String(err)).toMatch(/was killed by SIGTERM/);
    expect(String(err)).not.toMatch(/watchdog/);
  });

  it("starts every real-time child under the watchdog, the limit set before the priority", () => {
    const [cmd, argv] = childCommand(["x.js"], { realtime: 10, cpu: 1 });
    expect([cmd, ...argv]).toEqual([
      "prlimit",
      "--rttime=3000000:4000000",
      "chrt",
      "-r",
      "10",
      "taskset",
      "-c",
      "1",
      process.execPath,
      "x.js",
    ]);
    expect(childCommand(["x.js"], {})).toEqual([process.execPath, ["x.js"]]); // no watchdog where it is not real-time
  });

  it("fails work that does not finish by its deadline, and passes on work that does", async () => {
    await expect(within(new Promise(() => {}), 50, "a round")).rejects.toThrow("a round did not finish in 0 s");
    await expect(within(Promise.resolve(7), 50, "a round")).resolves.toBe(7);
  });
});
