/**
 * Spawned by test/runtimes.test.ts under Node, Deno and Bun: starts the netlink
 * source (the module named by the first argument), watches CPU 0, waits until
 * the kernel registered it, then with "unwatch" stops watching and waits again,
 * and returns without closing the source. Unwatched, the process must end by
 * itself; still watching ("keep"), it must stay up, as a listening server does.
 * With "exit" it lets the reader settle into its idle poll, prints the wall
 * clock, and calls process.exit(0) while still watching: the exit must not wait
 * for the poll's timeout.
 */
const { openNetlinkSource } = await import(process.argv[2]);
const source = await openNetlinkSource();
source.start({ exit() {}, kernelLoss() {} });
source.watch([0], true);
await source.synced();
if (process.argv[3] === "unwatch") {
  source.watch([0], false);
  await source.synced();
}
if (process.argv[3] === "exit") {
  await new Promise((r) => setTimeout(r, 300));
  console.log(`exiting ${Date.now()}`);
  process.exit(0);
}
console.log("synced");
