/**
 * The Syscalls object over a raw FFI symbol table, shared by the Node (koffi),
 * Deno and Bun bindings (which differ only in how they open libc, pass sizes
 * and read errno).
 */
import type { Syscalls } from "./syscalls.ts";

type Fn = (...args: unknown[]) => unknown;

// <fcntl.h> on Linux (all architectures).
const F_DUPFD_CLOEXEC = 1030;

/** How one FFI calls libc. */
export interface RawLibc {
  readonly runtime: string;
  readonly fn: Record<string, Fn>;
  /** The thread's errno after a failed call. */
  errno(): number;
  /** A size_t / unsigned long argument in the FFI's representation. */
  size(n: number): unknown;
  /** The address of a typed array's first byte (see Syscalls.address). */
  address(buf: Uint8Array): number;
}

/** Wraps raw libc calls as Syscalls (negative results become -errno). */
export function syscallsFrom(libc: RawLibc): Syscalls {
  const f = (name: string): Fn => libc.fn[name]!;
  const r = (n: unknown): number => {
    const v = Number(n);
    return v < 0 ? -libc.errno() : v;
  };
  const int = new Int32Array(1), len = new Uint32Array(1);
  return {
    runtime: libc.runtime,
    socket: (d, t, p) => r(f("socket")(d, t, p)),
    bind: (fd, addr) => r(f("bind")(fd, addr, addr.byteLength)),
    getsockname: (fd, addr) => {
      len[0] = addr.byteLength;
      return r(f("getsockname")(fd, addr, len));
    },
    setsockoptInt: (fd, level, name, value) => {
      int[0] = value;
      return r(f("setsockopt")(fd, level, name, int, 4));
    },
    getsockopt: (fd, level, name, buf) => {
      len[0] = buf.byteLength;
      const res = r(f("getsockopt")(fd, level, name, buf, len));
      return res < 0 ? res : len[0]!;
    },
    send: (fd, data, flags) => r(f("send")(fd, data, libc.size(data.byteLength), flags)),
    recv: (fd, buf, flags) => r(f("recv")(fd, buf, libc.size(buf.byteLength), flags)),
    recvmmsg: (fd, msgvec, vlen, flags) => r(f("recvmmsg")(fd, msgvec, vlen, flags, null)),
    address: (buf) => libc.address(buf),
    eventfd: (initval, flags) => r(f("eventfd")(initval, flags)),
    read: (fd, buf) => r(f("read")(fd, buf, libc.size(buf.byteLength))),
    write: (fd, data) => r(f("write")(fd, data, libc.size(data.byteLength))),
    poll: (fds, nfds, timeout) => r(f("poll")(fds, libc.size(nfds), timeout)),
    close: (fd) => r(f("close")(fd)),
    dupCloexec: (fd) => r(f("fcntl")(fd, F_DUPFD_CLOEXEC, 0)),
  };
}

/** The libc functions the netlink source binds, as (parameters, result) in C terms. */
export const LIBC_SIGNATURES: Record<string, [params: string[], result: string]> = {
  socket: [["i32", "i32", "i32"], "i32"],
  bind: [["i32", "buf", "u32"], "i32"],
  getsockname: [["i32", "buf", "buf"], "i32"],
  setsockopt: [["i32", "i32", "i32", "buf", "u32"], "i32"],
  getsockopt: [["i32", "i32", "i32", "buf", "buf"], "i32"],
  send: [["i32", "buf", "u64", "i32"], "i64"],
  recv: [["i32", "buf", "u64", "i32"], "i64"],
  recvmmsg: [["i32", "buf", "u32", "i32", "ptr"], "i32"],
  eventfd: [["u32", "i32"], "i32"],
  read: [["i32", "buf", "u64"], "i64"],
  write: [["i32", "buf", "u64"], "i64"],
  poll: [["buf", "u64", "i32"], "i32"],
  close: [["i32"], "i32"],
  // fcntl is variadic; its third argument, an int here, is passed as a fixed one. Linux's x86-64 and
  // AArch64 calling conventions pass a variadic int where a fixed one goes (Deno's FFI has no variadics).
  fcntl: [["i32", "i32", "i32"], "i32"],
  __errno_location: [[], "ptr"],
};
