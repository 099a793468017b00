/**
 * Spawned by test/runtimes.test.ts under Node, Deno and Bun: starts the netlink
 * source (the module named by the first argument), watches CPU 0, waits until
 * the kernel registered it, then with "unwatch" stops watching and waits again,
 * and returns without closing the source. Unwatched, the process must end by
 * itself; still watching ("keep"), it must stay up, as a listening server does.
 * With "exit" it lets the reader settle into its idle poll, prints the wall
 * clock, and calls process.exit(0) while still watching: the exit must not wait
 * for the poll's timeout. With "emit-exit HELPER" it sees one exit on CPU 0,
 * runs the process's "exit" listeners (what process.exit() does first), and
 * reports whether a second exit still reached the sink: the reader's hook must
 * have stopped its worker.
 */
const { openNetlinkSource } = await import(process.argv[2]);
const source = await openNetlinkSource();
const comms = [];
source.start({ exit: (r) => comms.push(r.pidStats.acComm), kernelLoss() {} });
source.watch([0], true);
await source.synced();
if (process.argv[3] === "unwatch") {
  source.watch([0], false);
  await source.synced();
}
if (process.argv[3] === "emit-exit") {
  const { spawnSync } = await import("node:child_process");
  const exitOn0 = (name) => spawnSync("taskset", ["-c", "0", process.argv[4], "exit", name, "0"]);
  const seen = async (name, ms) => {
    for (const end = Date.now() + ms; Date.now() < end;) {
      if (comms.includes(name)) return true;
      await new Promise((r) => setTimeout(r, 10));
    }
    return comms.includes(name);
  };
  exitOn0("tw-before");
  const before = await seen("tw-before", 10_000);
  process.emit("exit", 0);
  exitOn0("tw-after");
  const after = await seen("tw-after", 1000);
  console.log(JSON.stringify({ before, after }));
  process.exit(0);
}
if (process.argv[3] === "exit") {
  await new Promise((r) => setTimeout(r, 300));
  console.log(`exiting ${Date.now()}`);
  process.exit(0);
}
console.log("synced");
