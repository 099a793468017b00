/**
 * recvmmsg(2) into a slab: one struct mmsghdr array and its iovecs, built
 * once and reused for every call (only the iovecs' base pointers move), and
 * the datagrams packed into the slab as frames the main thread walks:
 * [cpu u32][length u32][received-at f64 ms][bytes, padded to 8].
 * Layouts are Linux LP64's (x86_64, aarch64): struct msghdr is 56 bytes,
 * struct mmsghdr 64 (msg_len at 56), struct iovec 16.
 */
import { FRAME_HEADER } from "./_reader-protocol.ts";
import * as K from "./constants.ts";
import type { Syscalls } from "../../sys/syscalls.ts";

/** The most one datagram may hold: an exit message is ~1.2 KB; TASKSTATS never sends more than two structs. */
export const MAX_DATAGRAM = 16 * 1024;
/** Room one datagram takes in a slab before packing. */
export const STRIDE = FRAME_HEADER + MAX_DATAGRAM;

const MMSGHDR = 64, MSG_IOV = 16, MSG_IOVLEN = 24, MSG_FLAGS = 48, MSG_LEN = 56;
const IOVEC = 16;
/** recvmsg's msg_flags bit for a datagram longer than its buffer. */
const MSG_TRUNC = 0x20;

/** A datagram did not fit MAX_DATAGRAM: the kernel cut it (MSG_TRUNC). */
export class DatagramTruncatedError extends Error {
  override readonly name = "DatagramTruncatedError";
}

const align8 = (n: number): number => (n + 7) & ~7;

/** A slab the worker reads into: its bytes, a view, and its address. */
export interface Slab {
  readonly bytes: Uint8Array;
  readonly dv: DataView;
  readonly at: number;
}

/** A Slab over `buffer` (its address looked up once: shared memory never moves). */
export function slabOf(sys: Syscalls, buffer: ArrayBufferLike): Slab {
  const bytes = new Uint8Array(buffer);
  return { bytes, dv: new DataView(buffer), at: sys.address(bytes) };
}

function setPointer(dv: DataView, at: number, address: number): void {
  dv.setUint32(at, address % 0x100000000, true);
  dv.setUint32(at + 4, Math.floor(address / 0x100000000), true);
}

/** Reads datagrams in batches of up to `vlen` per syscall. */
export class RecvBatch {
  readonly #sys: Syscalls;
  readonly #vlen: number;
  // Both arrays are over 64 bytes, so their backing stores are off-heap and never move (see Syscalls.address).
  readonly #msgs: Uint8Array;
  readonly #msgsDv: DataView;
  readonly #iovsDv: DataView;

  constructor(sys: Syscalls, vlen: number) {
    if (!Number.isInteger(vlen) || vlen < 1 || vlen > 1024) throw new RangeError(`vlen must be 1 to 1024, got ${vlen}`);
    this.#sys = sys;
    this.#vlen = vlen;
    this.#msgs = new Uint8Array(Math.max(256, vlen * MMSGHDR));
    this.#msgsDv = new DataView(this.#msgs.buffer);
    const iovs = new Uint8Array(Math.max(256, vlen * IOVEC));
    this.#iovsDv = new DataView(iovs.buffer);
    const iovsAt = sys.address(iovs);
    for (let i = 0; i < vlen; i++) {
      setPointer(this.#msgsDv, i * MMSGHDR + MSG_IOV, iovsAt + i * IOVEC);
      this.#msgsDv.setUint32(i * MMSGHDR + MSG_IOVLEN, 1, true);
      this.#iovsDv.setUint32(i * IOVEC + 8, MAX_DATAGRAM, true);
    }
    // Kept reachable as long as the batch: the mmsghdrs point into it.
    this.#iovs = iovs;
  }

  readonly #iovs: Uint8Array;
  /** Datagrams the last read() asked for, and received. */
  asked = 0;
  received = 0;

  /**
   * Receives (MSG_DONTWAIT) as many datagrams as fit `slab` past `used` (at
   * most vlen), packs them as frames of `cpu` stamped `at`, and returns the
   * new `used`; or -errno when the first receive failed (EAGAIN: none queued).
   * `slab.at` is sys.address(slab.bytes).
   */
  read(fd: number, cpu: number, at: number, slab: Slab, used: number): number {
    const n = Math.min(this.#vlen, Math.floor((slab.bytes.byteLength - used) / STRIDE));
    this.asked = n;
    this.received = 0;
    if (n === 0) return used;
    for (let i = 0; i < n; i++) setPointer(this.#iovsDv, i * IOVEC, slab.at + used + i * STRIDE + FRAME_HEADER);
    const got = this.#sys.recvmmsg(fd, this.#msgs, n, K.MSG_DONTWAIT);
    if (got <= 0) return got === 0 ? used : got;
    this.received = got;
    let pos = used;
    for (let i = 0; i < got; i++) {
      // Datagram i landed at its stride; moved down so that frames are packed (its header written after).
      const len = this.#length(i), from = used + i * STRIDE + FRAME_HEADER;
      if (from !== pos + FRAME_HEADER) slab.bytes.copyWithin(pos + FRAME_HEADER, from, from + len);
      slab.dv.setUint32(pos, cpu, true);
      slab.dv.setUint32(pos + 4, len, true);
      slab.dv.setFloat64(pos + 8, at, true);
      pos += FRAME_HEADER + align8(len);
    }
    return pos;
  }

  #length(i: number): number {
    if ((this.#msgsDv.getInt32(i * MMSGHDR + MSG_FLAGS, true) & MSG_TRUNC) !== 0) {
      throw new DatagramTruncatedError(`a netlink datagram was longer than ${MAX_DATAGRAM} bytes (MSG_TRUNC)`);
    }
    return this.#msgsDv.getUint32(i * MMSGHDR + MSG_LEN, true);
  }
}
