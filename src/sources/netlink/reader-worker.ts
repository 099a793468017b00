/**
 * The netlink reader, off the main thread: one socket per watched CPU,
 * registered with the kernel for that CPU only, drained in batches into
 * slabs that are transferred (not copied) to the main thread. It makes
 * syscalls and frames bytes; decoding is the main thread's.
 */
import { parentPort, workerData } from "node:worker_threads";
import type { FromWorker, ToWorker, WorkerOptions } from "./_reader-protocol.ts";
import { FRAME_HEADER } from "./_reader-protocol.ts";
import { ownThreadId } from "./_thread-cpu.ts";
import { encodeTaskstatsGet } from "./codec.ts";
import * as K from "./constants.ts";
import { type GenlSocket, openGenlSocket } from "./genl-socket.ts";
import { loadSyscalls } from "../../sys/load.ts";
import { SyscallError, type Syscalls } from "../../sys/syscalls.ts";

const MAX_DATAGRAM = 16 * 1024; // an exit message is ~1.2 KB; TASKSTATS never sends more than two structs

const opts = workerData as WorkerOptions;
const port = parentPort!;
const post = (m: FromWorker, transfer?: ArrayBuffer[]) => port.postMessage(m, transfer);
const pending = new Int32Array(opts.pending);
const controls: ToWorker[] = [];
let wakeIdle: (() => void) | undefined;
port.on("message", (m: ToWorker) => {
  controls.push(m);
  wakeIdle?.();
});

interface CpuSocket {
  cpu: number;
  sock: GenlSocket;
  /** sk_drops when last read. */
  drops: number;
  /** ENOBUFS seen and sk_drops not re-read since. */
  overrun: boolean;
}

const sockets = new Map<number, CpuSocket>();
let pollfds = new Uint8Array(0);
let order: CpuSocket[] = [];
let seq = 1;
let slab = new Uint8Array(opts.slabBytes);
let used = 0;
/** When the last poll returned, wall-clock ms: the receive time of what it read (one stamp per poll, not per record). */
let polledAt = 0;
const wallNow = (): number => performance.timeOrigin + performance.now();

function rebuildPoll(): void {
  order = [...sockets.values()];
  pollfds = new Uint8Array(8 * order.length);
  const dv = new DataView(pollfds.buffer);
  order.forEach((s, i) => {
    dv.setInt32(8 * i, s.sock.fd, true);
    dv.setInt16(8 * i + 4, K.POLLIN, true);
  });
}

// TASKSTATS_CMD_ATTR_REGISTER_CPUMASK is keyed by the sending socket's port id,
// so registering "c" on this socket makes it the listener for CPU c alone.
function watch(sys: Syscalls, cpu: number): void {
  if (sockets.has(cpu)) return;
  let sock: GenlSocket | undefined;
  try {
    sock = openGenlSocket(sys);
    const rcvbuf = sock.setReceiveBuffer(opts.rcvbuf);
    const s = seq++;
    sock.transact(
      encodeTaskstatsGet(opts.family, s, { type: K.TASKSTATS_CMD_ATTR_REGISTER_CPUMASK, string: String(cpu) }),
      s,
      `register CPU ${cpu}`,
    );
    sockets.set(cpu, { cpu, sock, drops: sock.drops(), overrun: false });
    rebuildPoll();
    post({ op: "watching", cpu, rcvbuf, portId: sock.portId });
  } catch (err) {
    sock?.close();
    post({
      op: "watch-failed",
      cpu,
      errno: err instanceof SyscallError ? err.errno : 0,
      message: String((err as Error).message),
    });
  }
}

function unwatch(cpu: number): void {
  const s = sockets.get(cpu);
  if (s === undefined) return;
  flush(); // what was read before deregistering still counts
  reportDrops(s);
  const q = seq++;
  try {
    s.sock.transact(
      encodeTaskstatsGet(opts.family, q, { type: K.TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK, string: String(cpu) }),
      q,
      `deregister CPU ${cpu}`,
    );
  } catch {
    // Closing the socket is enough: the kernel drops a listener whose port is gone on its next send.
  }
  s.sock.close();
  sockets.delete(cpu);
  rebuildPoll();
  post({ op: "unwatched", cpu });
}

function flush(): void {
  if (used === 0) return;
  Atomics.add(pending, 0, 1);
  const buffer = slab.buffer as ArrayBuffer;
  post({ op: "batch", slab: buffer, used, at: polledAt }, [buffer]);
  slab = new Uint8Array(opts.slabBytes);
  used = 0;
}

// netlink_overrun() counts every record it drops in sk_drops, but raises
// ENOBUFS only on the first drop of a congested spell (NETLINK_S_CONGESTED
// holds until the queue is read empty). So after ENOBUFS the count is read
// once the queue is empty: exact, and placed after the records read so far.
// (nlmsg_seq gaps cannot count drops exactly: taskstats_exit() may migrate
// between looking up a CPU's listeners and taking that CPU's sequence number.)
function reportDrops(s: CpuSocket): void {
  const now = s.sock.drops();
  const delta = (now - s.drops) >>> 0;
  s.drops = now;
  s.overrun = false;
  if (delta === 0) return;
  flush();
  post({ op: "drops", cpu: s.cpu, count: delta });
}

function drain(sys: Syscalls, s: CpuSocket): void {
  for (;;) {
    if (opts.slabBytes - used < FRAME_HEADER + MAX_DATAGRAM) flush();
    const room = slab.subarray(used + FRAME_HEADER, used + FRAME_HEADER + MAX_DATAGRAM);
    const n = sys.recv(s.sock.fd, room, K.MSG_DONTWAIT);
    if (n === -K.EAGAIN) {
      if (s.overrun) reportDrops(s);
      return;
    }
    if (n === -K.EINTR) continue;
    if (n === -K.ENOBUFS) {
      s.overrun = true;
      post({ op: "enobufs", cpu: s.cpu });
      continue;
    }
    if (n < 0) throw new SyscallError(`recv(CPU ${s.cpu})`, -n);
    const dv = new DataView(slab.buffer, used, FRAME_HEADER);
    dv.setUint32(0, s.cpu, true);
    dv.setUint32(4, n, true);
    used += FRAME_HEADER + ((n + 3) & ~3);
  }
}

const yieldNow: () => Promise<void> = typeof setImmediate === "function"
  ? () => new Promise((r) => setImmediate(r))
  : () => new Promise((r) => setTimeout(r, 0));

async function run(): Promise<void> {
  const sys = await loadSyscalls();
  post({ op: "ready", runtime: sys.runtime, tid: ownThreadId() });
  let lastYield = performance.now();
  for (;;) {
    for (let c = controls.shift(); c !== undefined; c = controls.shift()) {
      if (c.op === "stop") {
        for (const cpu of [...sockets.keys()]) unwatch(cpu);
        flush();
        post({ op: "stopped" });
        return;
      }
      if (c.op === "watch") watch(sys, c.cpu);
      else unwatch(c.cpu);
    }
    if (order.length === 0) {
      await new Promise<void>((r) => (wakeIdle = r));
      wakeIdle = undefined;
      continue;
    }
    if (Atomics.load(pending, 0) >= opts.maxPendingBatches) {
      // The main thread is behind: stop reading and let the kernel buffer absorb (and, past it, drop and count).
      await new Promise((r) => setTimeout(r, 1));
      continue;
    }
    const ready = sys.poll(pollfds, order.length, 20);
    if (ready > 0) {
      polledAt = wallNow();
      const dv = new DataView(pollfds.buffer);
      order.forEach((s, i) => {
        if (dv.getInt16(8 * i + 6, true) !== 0) drain(sys, s);
      });
    }
    flush();
    if (ready <= 0 || performance.now() - lastYield > 5) {
      await yieldNow(); // lets control messages in
      lastYield = performance.now();
    }
  }
}

run().catch((err: unknown) => post({ op: "fatal", message: err instanceof Error ? err.message : String(err) }));
