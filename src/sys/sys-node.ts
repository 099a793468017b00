/**
 * Syscalls on Node through koffi. Only calls libc; see syscalls.ts.
 * koffi is an optional dependency (only the netlink source, the send-buffer
 * cap and the listening socket's copies need it), so it is imported here, where a missing install can be named.
 */
import { syscallsFrom } from "./_libc.ts";
import type { Syscalls } from "./syscalls.ts";

/** What a Node install without koffi is told (loadSyscalls' callers add the context). */
const KOFFI_MISSING =
  "koffi, the optional dependency taskwire's kernel calls use on Node, is not installed: run `npm install koffi`";

/** koffi is not installed. A failed import leaves nothing to import, so callers tell it by `name`. */
class KoffiMissingError extends Error {
  override readonly name = "KoffiMissingError";
}

async function importKoffi(): Promise<typeof import("koffi").default> {
  try {
    return (await import("koffi")).default;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const message = err instanceof Error ? err.message : String(err);
    if (code === "ERR_MODULE_NOT_FOUND" && message.includes("'koffi'")) {
      throw new KoffiMissingError(KOFFI_MISSING, { cause: err });
    }
    // Installed, but its native module did not load (no prebuilt binary for this platform, say).
    throw new Error(`koffi is installed but did not load: ${message}`, { cause: err });
  }
}

const koffi = await importKoffi();

// koffi calls a variadic function with each variadic argument's type before it.
function variadicInt(fn: (...args: unknown[]) => unknown): (a: unknown, b: unknown, c: unknown) => unknown {
  return (a, b, c) => fn(a, b, "int", c);
}

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
    recvmmsg: libc.func("int recvmmsg(int, void *, unsigned int, int, void *)"),
    eventfd: libc.func("int eventfd(unsigned int, int)"),
    read: libc.func("intptr_t read(int, void *, size_t)"),
    write: libc.func("intptr_t write(int, void *, size_t)"),
    poll: libc.func("int poll(void *, unsigned long, int)"),
    close: libc.func("int close(int)"),
    fcntl: variadicInt(libc.func("int fcntl(int, int, ...)")),
  };
  // memset(buf, 0, 0) writes nothing and returns its argument: the address koffi passed, which for a
  // typed array is its backing store itself (koffi copies nothing for void * buffers).
  const memset = libc.func("uintptr_t memset(void *, int, size_t)");
  const address = (buf: Uint8Array) => Number(memset(buf, 0, 0));
  return syscallsFrom({ runtime: "koffi", fn, errno: () => koffi.errno(), size: (n) => n, address });
}
