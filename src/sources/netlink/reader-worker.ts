/**
 * The netlink reader, off the main thread: one socket per watched CPU,
 * registered with the kernel for that CPU only, drained with recvmmsg into
 * slabs of shared memory from a fixed pool. A slab's number goes to the main
 * thread, which clears the slab's flag once it has decoded it, so reading
 * allocates nothing and a slab's return costs neither thread a message. Records
 * are held for up to a short window and handed over together (sooner when
 * a slab fills), so the main thread's per-batch work is shared by many
 * records. While records keep coming it naps between reads instead of
 * polling, one wakeup a window, for no longer than a quarter of any socket's
 * buffer can take nor 5 ms. On a quiet host it sleeps in poll() on the
 * sockets and a doorbell the main thread rings with each control message.
 * It makes syscalls and frames bytes; decoding is the main thread's.
 */
import { parentPort, workerData } from "node:worker_threads";
import {
  type FromWorker,
  SHARED_PENDING,
  SHARED_POSTED,
  SHARED_SLABS,
  SHARED_STOP,
  type ToWorker,
  type WorkerOptions,
} from "./_reader-protocol.ts";
import { ownThreadId } from "./_thread-cpu.ts";
import { encodeTaskstatsGet } from "./codec.ts";
import * as K from "./constants.ts";
import { type GenlSocket, openGenlSocket } from "./genl-socket.ts";
import { RecvBatch, type Slab, slabOf, STRIDE } from "./_recv-batch.ts";
import { doorbellOn } from "./_doorbell.ts";
import { Naps } from "./_naps.ts";
import { PollSet } from "./_poll-set.ts";
import { loadSyscalls } from "../../sys/load.ts";
import { SyscallError, type Syscalls } from "../../sys/syscalls.ts";

const opts = workerData as WorkerOptions;
const port = parentPort!;
const post = (m: FromWorker) => port.postMessage(m);
const shared = new Int32Array(opts.shared);
const controls: ToWorker[] = [];
/**
 * Control messages taken from the port, as an int32 that wraps as shared[SHARED_POSTED] does (Atomics.add on an
 * Int32Array): different from it while one is on its way.
 */
let received = 0;
/**
 * The pool, by number: a slab is free to read into while its flag in `shared` is 0. It grows on demand to
 * opts.slabs (a burst the main thread is behind on waits here rather than in the kernel's buffer) and never shrinks.
 */
const pool: Slab[] = [];
/** Whether the main thread has slab i's memory yet (it comes with the slab's first batch). */
const introduced: boolean[] = [];
let wakeIdle: (() => void) | undefined;
port.on("message", (m: ToWorker) => {
  received = (received + 1) | 0;
  controls.push(m);
  wakeIdle?.();
});

interface CpuSocket {
  cpu: number;
  sock: GenlSocket;
  /** Its receive buffer in effect (SO_RCVBUF: what the kernel charges queued records against). */
  rcvbuf: number;
  /** Bytes read from it since the last pass. */
  read: number;
  /** sk_drops when last read. */
  drops: number;
  /** ENOBUFS seen and sk_drops not re-read since. */
  overrun: boolean;
  /** Whether the next pass reads it: the last poll() named it (readable, or in error). */
  ready: boolean;
}

const sockets = new Map<number, CpuSocket>();
let seq = 1;
let sys: Syscalls;
/** The doorbell and `sockets`, polled together. */
let polls: PollSet<CpuSocket>;
let batch: RecvBatch;
let slab: Slab | undefined;
/** slab's number in the pool. */
let current = -1;
let used = 0;
/** When the oldest record in the slab was read (performance.now()), 0 when it holds none. */
let heldSince = 0;
/** When the last hand-off was (performance.now()). */
let lastHandOff = -Infinity;
/** Whether the next hand-off is spaced after it: the last carried more than one record. */
let spaced = false;
/** Datagrams (records) in the slab being filled. */
let heldRecords = 0;
/**
 * Once a hand-off carries more than one record (they come faster than one a window), the next is at least
 * MIN_HANDOFF_INTERVAL_MS after it (or a window, if that is longer; with a window of 0 nothing is held at all): a
 * steady flow goes over in batches at most 100 times a second, while a record that comes alone (after a quiet spell,
 * or in a trickle slower than one a window) is handed over a window after it was read. Each hand-off wakes the main
 * thread and sends a message on every stream, about 1 ms of CPU in all on a paravirtualized host: at 1,000 exits a
 * second, hand-offs 2 ms apart took 12-19% of a core.
 */
const MIN_HANDOFF_INTERVAL_MS = 10;
const handOffInterval = opts.batchWindowMs === 0 ? 0 : Math.max(opts.batchWindowMs, MIN_HANDOFF_INTERVAL_MS);
/** When the records held are due to be handed over (performance.now()). */
const dueAt = (): number => Math.max(heldSince + opts.batchWindowMs, spaced ? lastHandOff + handOffInterval : 0);
/** Set by a hand-off: records are flowing. */
let handedOff = false;
/** When the reader began a window's sleep without polling (0: it polls), the earliest a record read after it came. */
let blindSince = 0;
const naps = new Naps(shared);
/**
 * The idle poll's timeout. A control message ends the poll through the doorbell, a record through its socket, and the
 * process's exit, a failure or terminate() through the doorbell too (SHARED_STOP): Node joins worker threads at exit
 * and in terminate(), and a thread in a foreign call cannot be interrupted, so those would otherwise wait for the
 * timeout. With the exit hooked (opts.exitHooked) it is a 5 s backstop; 100 ms, which bounded that wait, cost ~2.5 ms
 * of CPU a second on an idle host (10 wakeups). A reader started from a worker thread keeps 100 ms: terminating that
 * thread emits no "exit" to hook.
 */
const IDLE_POLL_MS = opts.exitHooked ? 5000 : 100;
const wallNow = (): number => performance.timeOrigin + performance.now();

// TASKSTATS_CMD_ATTR_REGISTER_CPUMASK is keyed by the sending socket's port id,
// so registering "c" on this socket makes it the listener for CPU c alone.
function watch(cpu: number): void {
  const had = sockets.get(cpu);
  if (had !== undefined) return post({ op: "watching", cpu, rcvbuf: had.rcvbuf, portId: had.sock.portId }); // acked
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
    sockets.set(cpu, { cpu, sock, rcvbuf, read: 0, drops: sock.drops(), overrun: false, ready: true });
    polls.rebuild(sockets.values());
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
  if (s === undefined) return post({ op: "unwatched", cpu }); // every change is acked: synced() counts them
  // What the kernel queued during the last nap: the deregistration's transaction would read past it.
  drain(s);
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
  polls.rebuild(sockets.values());
  if (sockets.size === 0) (handedOff = false), (blindSince = 0), (spaced = false); // a re-watch starts afresh
  post({ op: "unwatched", cpu });
}

function flush(): void {
  if (slab === undefined || used === 0) return;
  Atomics.add(shared, SHARED_PENDING, 1);
  Atomics.store(shared, SHARED_SLABS + current, 1);
  if (introduced[current]) post({ op: "batch", slab: current, used });
  else {
    post({ op: "batch", slab: current, used, buffer: slab.bytes.buffer as SharedArrayBuffer });
    introduced[current] = true;
  }
  slab = undefined;
  used = 0;
  heldSince = 0;
  lastHandOff = performance.now();
  spaced = heldRecords > 1;
  heldRecords = 0;
  handedOff = true;
}

/** A slab with room for one more recvmmsg stride, posting a full one; false when the main thread holds them all. */
function room(): boolean {
  if (slab !== undefined && slab.bytes.byteLength - used >= STRIDE) return true;
  flush();
  current = freeSlab();
  slab = pool[current];
  return slab !== undefined;
}

/** The first slab the main thread is not holding, a new one if none is and the pool may grow; -1 if neither. */
function freeSlab(): number {
  for (let i = 0; i < pool.length; i++) if (Atomics.load(shared, SHARED_SLABS + i) === 0) return i;
  if (pool.length === opts.slabs) return -1;
  pool.push(slabOf(sys, new SharedArrayBuffer(opts.slabBytes)));
  return pool.length - 1;
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

/** Reads one socket until the kernel has nothing queued for it; false when the slab pool ran out first. */
function drain(s: CpuSocket): boolean {
  for (;;) {
    if (!room()) return false;
    const n = batch.read(s.sock.fd, s.cpu, wallNow(), slab!, used);
    if (n >= 0) {
      if (heldSince === 0 && n > used) heldSince = blindSince !== 0 ? blindSince : performance.now();
      const short = batch.received < batch.asked;
      heldRecords += batch.received;
      s.read += n - used;
      used = n;
      // A short batch emptied the queue (MSG_DONTWAIT returns what is there); after ENOBUFS, read on to EAGAIN.
      if (short && !s.overrun) return true;
      continue;
    }
    if (n === -K.EAGAIN) {
      if (s.overrun) reportDrops(s);
      return true;
    }
    if (n === -K.EINTR) continue;
    if (n === -K.ENOBUFS) {
      s.overrun = true;
      naps.overran(performance.now());
      post({ op: "enobufs", cpu: s.cpu });
      continue;
    }
    throw new SyscallError(`recvmmsg(CPU ${s.cpu})`, -n);
  }
}

/** Hands the slab over when it is due (dueAt) and the main thread is free to take it (or it is full: room()). */
function handOff(now: number): void {
  if (used > 0 && now >= dueAt() && Atomics.load(shared, SHARED_PENDING) === 0) flush();
}

/**
 * Lets the port deliver the control messages the main thread posted: the reader's only reason to leave its loop.
 * Under Deno a chain of setImmediate yields, each followed by a blocking poll(), kept the worker's port from
 * delivering a message for up to 2 s (measured: an unwatch read 2.1-2.3 s after the doorbell had woken the poll); a
 * timer lets it in at once.
 */
const letMessagesIn: () => Promise<void> = typeof setImmediate === "function" && !("Deno" in globalThis)
  ? () => new Promise((r) => setImmediate(r))
  : () => new Promise((r) => setTimeout(r, 0));

/** Runs queued control messages; true once stopped. */
function control(): boolean {
  for (let c = controls.shift(); c !== undefined; c = controls.shift()) {
    if (c.op === "stop") {
      for (const cpu of [...sockets.keys()]) unwatch(cpu);
      flush();
      post({ op: "stopped" });
      return true;
    }
    if (c.op === "watch") watch(c.cpu);
    else if (c.op === "unwatch") unwatch(c.cpu);
  }
  return false;
}

/**
 * One pass: read the sockets the last poll() named, hand off if due, then wait for more (or for the window). After a
 * nap a poll() that does not wait names the sockets with records: reading every socket instead would cost a recvmmsg
 * per watched CPU for each nap, most of them finding nothing, on a host of many CPUs.
 */
function step(): void {
  let drained = true;
  for (const s of polls.sockets) if (s.ready) drained = drain(s) && drained;
  blindSince = 0;
  const now = performance.now();
  naps.limit(now, polls.sockets);
  handOff(now);
  polls.wait(napped(drained) ? 0 : IDLE_POLL_MS);
}

/** Sleeps while records are held, flowing, or waiting for a slab (true); false when the reader should poll instead. */
function napped(drained: boolean): boolean {
  if (!drained) {
    // Every slab is with the main thread: stop reading (the kernel's buffer absorbs and, past it, drops and counts)
    // until it finishes one.
    const busy = Atomics.load(shared, SHARED_PENDING);
    if (busy !== 0) naps.nap(1, busy);
    return true;
  }
  if (used > 0) {
    // Holding records: sleep until they are due (no poll: more records only make the hand-off bigger). Past that, the
    // main thread is still on the last hand-off: wait until it notifies that it is done (it was a 0.2-1 ms timer:
    // a wakeup costs tens of microseconds in a paravirtualized guest), reading on after each nap meanwhile.
    const left = dueAt() - performance.now();
    const busy = Atomics.load(shared, SHARED_PENDING);
    if (left > 0) naps.nap(left);
    else if (busy !== 0) naps.nap(Math.max(opts.batchWindowMs, 1), busy);
    return true;
  }
  if (handedOff && spaced) {
    // Records are flowing: sleep the hand-off interval before reading again instead of polling, which woke this
    // thread for the first record and again at the window's end. What comes meanwhile waits in the kernel's buffer
    // instead of the slab (heldSince counts from here, so it is handed over as soon as it is due), for no longer than
    // a nap: a frame's receive time is at most MAX_NAP_MS late. After a lone record the reader polls: a nap would be
    // a third wakeup for it, with likely nothing to read.
    handedOff = false;
    blindSince = performance.now();
    naps.nap(handOffInterval);
    return true;
  }
  handedOff = false;
  return false;
}

async function run(): Promise<void> {
  sys = await loadSyscalls();
  polls = new PollSet(sys, doorbellOn(sys, opts.doorbell));
  batch = new RecvBatch(sys, opts.vlen);
  post({ op: "ready", runtime: sys.runtime, tid: ownThreadId() });
  for (;;) {
    if (Atomics.load(shared, SHARED_STOP) !== 0) return; // exiting, failed or terminated: reading on would only delay it
    if (control()) return;
    if (polls.sockets.length === 0) {
      await new Promise<void>((r) => (wakeIdle = r));
      wakeIdle = undefined;
    } else if (Atomics.load(shared, SHARED_POSTED) !== received) await letMessagesIn();
    else step();
  }
}

run().catch((err: unknown) => post({ op: "fatal", message: err instanceof Error ? err.message : String(err) }));
