/**
 * The only runtime-specific surface of taskwire: a handful of libc calls
 * (the netlink source's sockets and its reader's doorbell, SO_SNDBUF on
 * client connections, and copies of the listening socket). Each
 * runtime's implementation (sys-node via koffi, sys-deno via Deno.dlopen,
 * sys-bun via bun:ffi) makes the calls and nothing else; all encoding and
 * decoding is shared code. load.ts picks the implementation.
 */

/** libc calls the netlink source needs. Failures return -errno (hot paths do not throw). */
export interface Syscalls {
  /** Which FFI this is ("koffi", "deno", "bun"). */
  readonly runtime: string;
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Uint8Array): number;
  getsockname(fd: number, addr: Uint8Array): number;
  setsockoptInt(fd: number, level: number, name: number, value: number): number;
  /** getsockopt(2) into `buf`; returns the length the kernel wrote. */
  getsockopt(fd: number, level: number, name: number, buf: Uint8Array): number;
  send(fd: number, data: Uint8Array, flags: number): number;
  recv(fd: number, buf: Uint8Array, flags: number): number;
  /**
   * recvmmsg(2) into the `vlen` struct mmsghdr of `msgvec` (their iovecs point
   * at memory whose addresses came from address()), no timeout. Returns the
   * messages received; each one's length is in its mmsghdr's msg_len.
   */
  recvmmsg(fd: number, msgvec: Uint8Array, vlen: number, flags: number): number;
  /**
   * The address of `buf`'s first byte, for pointers inside structs (recvmmsg's
   * iovecs). Stable while `buf` lives: the typed arrays passed here own
   * off-heap backing stores (larger than the engines' on-heap limit, or
   * shared memory), which neither V8 nor JavaScriptCore moves.
   */
  address(buf: Uint8Array): number;
  /** eventfd(2): a counter fd that poll() reports readable while non-zero. */
  eventfd(initval: number, flags: number): number;
  /** read(2) into `buf`; returns the bytes read. */
  read(fd: number, buf: Uint8Array): number;
  /** write(2) of `data`; returns the bytes written. */
  write(fd: number, data: Uint8Array): number;
  /** poll(2) over `fds` (struct pollfd array, 8 bytes each). */
  poll(fds: Uint8Array, nfds: number, timeoutMs: number): number;
  close(fd: number): number;
  /** fcntl(fd, F_DUPFD_CLOEXEC, 0): a copy of `fd` (the lowest free number) that exec does not pass on. */
  dupCloexec(fd: number): number;
}

/** A syscall failed; `errno` is the kernel's. */
export class SyscallError extends Error {
  override readonly name = "SyscallError";
  readonly errno: number;
  readonly syscall: string;
  constructor(syscall: string, errno: number, detail = "") {
    super(`${syscall}: ${errnoName(errno)}${detail ? ` (${detail})` : ""}`);
    this.errno = errno;
    this.syscall = syscall;
  }
}

const NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  22: "EINVAL",
  24: "EMFILE",
  93: "EPROTONOSUPPORT",
  97: "EAFNOSUPPORT",
  105: "ENOBUFS",
  111: "ECONNREFUSED",
};

/** "EPERM (1)" */
export function errnoName(errno: number): string {
  return `${NAMES[errno] ?? "errno"} (${errno})`;
}

/** Throws SyscallError for a negative result, else returns it. */
export function check(syscall: string, result: number, detail = ""): number {
  if (result < 0) throw new SyscallError(syscall, -result, detail);
  return result;
}
