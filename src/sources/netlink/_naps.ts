/**
 * How long the netlink reader (reader-worker.ts) naps between reads while
 * records come, and the nap itself: records wait in the kernel's buffer
 * meanwhile, so a nap ends before that buffer can fill.
 */
import { SHARED_PENDING } from "./_reader-protocol.ts";

/** The longest the reader sleeps between reads while records come (it reads at least this often). */
export const MAX_NAP_MS = 5;
// netlink charges a queued record its skb's truesize: ~2,300 bytes for a ~600-byte taskstats message (3.9x,
// measured on 6.18 with SO_MEMINFO), about 4x the bytes it takes in a slab.
const TRUESIZE_PER_BYTE = 4;
const OVERRUN_NAP_MS = 0.5;

/** A socket as a nap's limit sees it. */
export interface NapSocket {
  /** Its receive buffer in effect (SO_RCVBUF: what the kernel charges queued records against). */
  readonly rcvbuf: number;
  /** Bytes read from it since the last pass (set back to 0 by each pass). */
  read: number;
}

/** The reader's naps: limited by each pass's reads, woken early by the main thread where it waits on it. */
export class Naps {
  /** The worker's view of the memory it shares with the main thread (_reader-protocol.ts). */
  readonly #shared: Int32Array;
  readonly #sleeper = new Int32Array(new SharedArrayBuffer(4));
  /** When the last pass read the sockets (performance.now()). */
  #lastPass = 0;
  /** How long the reader may go without reading (recomputed each pass). */
  #limit = MAX_NAP_MS;
  /** When a socket last overran (ENOBUFS), performance.now(); for a second after, naps are as short as polling's were. */
  #lastOverrun = -Infinity;

  constructor(shared: Int32Array) {
    this.#shared = shared;
  }

  /** A socket overran (ENOBUFS) at `now`. */
  overran(now: number): void {
    this.#lastOverrun = now;
  }

  // Between reads records wait in the kernel's buffer, so a nap must end before a quarter of any socket's buffer
  // can fill at the rate it filled since the last pass (the old reader read every 1 ms at most; a wide window with a
  // small buffer would overflow otherwise), and within MAX_NAP_MS, which bounds how late a frame's receive time is.
  // A buffer that overflowed anyway (a burst from idle: the rate was not known yet) is read every OVERRUN_NAP_MS for a
  // second; the rate measured from a full buffer understates the real one.
  /** A pass read `sockets` at `now`: limits the naps until the next by what each took in since the last. */
  limit(now: number, sockets: Iterable<NapSocket>): void {
    const elapsed = Math.max(now - this.#lastPass, 0.001);
    this.#lastPass = now;
    this.#limit = now - this.#lastOverrun < 1000 ? OVERRUN_NAP_MS : MAX_NAP_MS;
    for (const s of sockets) {
      if (s.read > 0) this.#limit = Math.min(this.#limit, (s.rcvbuf / 4 / TRUESIZE_PER_BYTE) / (s.read / elapsed));
      s.read = 0;
    }
  }

  /**
   * Sleeps `ms`, or less as limit() allows (at least 0.2 ms: a tiny buffer at a high rate must not spin); with
   * `busy`, only while the main thread has that many batches pending (it notifies as it finishes each).
   */
  nap(ms: number, busy?: number): void {
    const limited = Math.min(ms, Math.max(this.#limit, 0.2));
    if (busy === undefined) Atomics.wait(this.#sleeper, 0, 0, limited);
    else Atomics.wait(this.#shared, SHARED_PENDING, busy, limited);
  }
}
