/** Syscalls on Bun through bun:ffi. Only calls libc; see syscalls.ts. */
import type { Syscalls } from "./syscalls.ts";

interface BunFfi {
  dlopen(path: string, symbols: Record<string, { args: string[]; returns: string }>): { symbols: Record<string, (...args: unknown[]) => unknown> };
  read: { i32(ptr: unknown, offset?: number): number };
}

/** Binds the libc functions the netlink source uses. */
export async function createBunSyscalls(): Promise<Syscalls> {
  const ffi = (await import(/* @vite-ignore */ "bun:ffi" as string)) as BunFfi;
  const { symbols: s } = ffi.dlopen("libc.so.6", {
    socket: { args: ["i32", "i32", "i32"], returns: "i32" },
    bind: { args: ["i32", "ptr", "u32"], returns: "i32" },
    getsockname: { args: ["i32", "ptr", "ptr"], returns: "i32" },
    setsockopt: { args: ["i32", "i32", "i32", "ptr", "u32"], returns: "i32" },
    getsockopt: { args: ["i32", "i32", "i32", "ptr", "ptr"], returns: "i32" },
    send: { args: ["i32", "ptr", "u64", "i32"], returns: "i64" },
    recv: { args: ["i32", "ptr", "u64", "i32"], returns: "i64" },
    poll: { args: ["ptr", "u64", "i32"], returns: "i32" },
    close: { args: ["i32"], returns: "i32" },
    __errno_location: { args: [], returns: "ptr" },
  });
  const errno = (): number => ffi.read.i32(s["__errno_location"]!(), 0);
  const r = (n: unknown): number => {
    const v = Number(n);
    return v < 0 ? -errno() : v;
  };
  const int = new Int32Array(1), len = new Uint32Array(1);
  return {
    runtime: "bun",
    socket: (d, t, p) => r(s["socket"]!(d, t, p)),
    bind: (fd, addr) => r(s["bind"]!(fd, addr, addr.byteLength)),
    getsockname: (fd, addr) => {
      len[0] = addr.byteLength;
      return r(s["getsockname"]!(fd, addr, len));
    },
    setsockoptInt: (fd, level, name, value) => {
      int[0] = value;
      return r(s["setsockopt"]!(fd, level, name, int, 4));
    },
    getsockopt: (fd, level, name, buf) => {
      len[0] = buf.byteLength;
      const res = r(s["getsockopt"]!(fd, level, name, buf, len));
      return res < 0 ? res : len[0]!;
    },
    send: (fd, data, flags) => r(s["send"]!(fd, data, data.byteLength, flags)),
    recv: (fd, buf, flags) => r(s["recv"]!(fd, buf, buf.byteLength, flags)),
    poll: (fds, nfds, timeout) => r(s["poll"]!(fds, nfds, timeout)),
    close: (fd) => r(s["close"]!(fd)),
  };
}
