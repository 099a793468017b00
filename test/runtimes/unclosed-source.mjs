/**
 * Spawned by test/runtimes.test.ts under Node, Deno and Bun: starts the netlink
 * source (the module named by the first argument), watches CPU 0, waits until
 * the kernel registered it, and returns without closing it. The process must
 * then end by itself: a started source does not hold it open.
 */
const { openNetlinkSource } = await import(process.argv[2]);
const source = await openNetlinkSource();
source.start({ exit() {}, kernelLoss() {} });
source.watch([0], true);
await source.synced();
console.log("synced");
