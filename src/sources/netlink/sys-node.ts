/** Syscalls on Node through koffi. Only calls libc; see syscalls.ts. */
import koffi from "koffi";
import type { Syscalls } from "./syscalls.ts";

/** Binds the libc functions the netlink source uses. */
export function createNodeSyscalls(): Syscalls {
  const libc = koffi.load("libc.so.6");
  const f = {
    socket: libc.func("int socket(int, int, int)"),
    bind: libc.func("int bind(int, void *, uint32_t)"),
    getsockname: libc.func("int getsockname(int, void *, _Inout_ uint32_t *)"),
    setsockopt: libc.func("int setsockopt(int, int, int, void *, uint32_t)"),
    getsockopt: libc.func("int getsockopt(int, int, int, void *, _Inout_ uint32_t *)"),
    send: libc.func("intptr_t send(int, void *, size_t, int)"),
    recv: libc.func("intptr_t recv(int, void *, size_t, int)"),
    poll: libc.func("int poll(void *, unsigned long, int)"),
    close: libc.func("int close(int)"),
  };
  const r = (n: number | bigint): number => {
    const v = Number(n);
    return v < 0 ? -koffi.errno() : v;
  };
  const int = new Int32Array(1);
  return {
    runtime: "koffi",
    socket: (d, t, p) => r(f.socket(d, t, p)),
    bind: (fd, addr) => r(f.bind(fd, addr, addr.byteLength)),
    getsockname: (fd, addr) => r(f.getsockname(fd, addr, [addr.byteLength])),
    setsockoptInt: (fd, level, name, value) => {
      int[0] = value;
      return r(f.setsockopt(fd, level, name, int, 4));
    },
    getsockopt: (fd, level, name, buf) => {
      const len = [buf.byteLength];
      const res = r(f.getsockopt(fd, level, name, buf, len));
      return res < 0 ? res : len[0]!;
    },
    send: (fd, data, flags) => r(f.send(fd, data, data.byteLength, flags)),
    recv: (fd, buf, flags) => r(f.recv(fd, buf, buf.byteLength, flags)),
    poll: (fds, nfds, timeout) => r(f.poll(fds, nfds, timeout)),
    close: (fd) => r(f.close(fd)),
  };
}
