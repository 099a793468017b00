/** Syscalls on Deno through Deno.dlopen. Only calls libc; see syscalls.ts. */
import type { Syscalls } from "./syscalls.ts";

// Deno's FFI types, declared here so the Node build type-checks without Deno's lib.
interface DenoFfi {
  dlopen(path: string, symbols: Record<string, { parameters: string[]; result: string }>): { symbols: Record<string, (...args: unknown[]) => unknown> };
  UnsafePointerView: new (ptr: unknown) => { getInt32(offset?: number): number };
}

/** Binds the libc functions the netlink source uses. */
export function createDenoSyscalls(): Syscalls {
  const Deno = (globalThis as unknown as { Deno: DenoFfi }).Deno;
  const { symbols: s } = Deno.dlopen("libc.so.6", {
    socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
    bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
    getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
    setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
    getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
    send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
    recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
    poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
    __errno_location: { parameters: [], result: "pointer" },
  });
  const errno = (): number => new Deno.UnsafePointerView(s["__errno_location"]!()).getInt32(0);
  const r = (n: unknown): number => {
    const v = Number(n);
    return v < 0 ? -errno() : v;
  };
  const int = new Int32Array(1), len = new Uint32Array(1);
  return {
    runtime: "deno",
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
    send: (fd, data, flags) => r(s["send"]!(fd, data, BigInt(data.byteLength), flags)),
    recv: (fd, buf, flags) => r(s["recv"]!(fd, buf, BigInt(buf.byteLength), flags)),
    poll: (fds, nfds, timeout) => r(s["poll"]!(fds, BigInt(nfds), timeout)),
    close: (fd) => r(s["close"]!(fd)),
  };
}
