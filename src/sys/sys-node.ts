/** Syscalls on Node through koffi. Only calls libc; see syscalls.ts. */
import koffi from "koffi";
import { syscallsFrom } from "./_libc.ts";
import type { Syscalls } from "./syscalls.ts";

/** Binds the libc functions the netlink source uses (typed arrays are passed by pointer). */
export function createNodeSyscalls(): Syscalls {
  const libc = koffi.load("libc.so.6");
  const fn = {
    socket: libc.func("int socket(int, int, int)"),
    bind: libc.func("int bind(int, void *, uint32_t)"),
    getsockname: libc.func("int getsockname(int, void *, void *)"),
    setsockopt: libc.func("int setsockopt(int, int, int, void *, uint32_t)"),
    getsockopt: libc.func("int getsockopt(int, int, int, void *, void *)"),
    send: libc.func("intptr_t send(int, void *, size_t, int)"),
    recv: libc.func("intptr_t recv(int, void *, size_t, int)"),
    poll: libc.func("int poll(void *, unsigned long, int)"),
    close: libc.func("int close(int)"),
  };
  return syscallsFrom({ runtime: "koffi", fn, errno: () => koffi.errno(), size: (n) => n });
}
