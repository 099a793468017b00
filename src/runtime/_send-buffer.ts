/**
 * Caps accepted TCP sockets' kernel send buffer (SO_SNDBUF). Linux autotunes
 * it up to net.ipv4.tcp_wmem's maximum (4 MiB by default), and a client that
 * stops reading has all of that filled before its stream feels backpressure:
 * a thousand stuck clients then take seconds of the event loop (where records
 * are dispatched) being written to. With a cap, backpressure reaches the
 * listener's bounded queue, where overflow is counted and reported, after a
 * few hundred KiB. Node has no API for it; the FFI the netlink source already
 * uses makes the one call. Where that cannot load (not Linux, no FFI), sockets
 * keep the kernel's default and frontSyscalls says so once.
 */
import type { Socket } from "node:net";
import type { Logger } from "@logtape/logtape";
import { logText } from "../log/logger.ts";
import type { Syscalls } from "../sys/syscalls.ts";

const SOL_SOCKET = 1;
const SO_SNDBUF = 7;

/**
 * Applies `bytes` (or, when given, the smaller `size`) to each socket given; 0: leave the kernel's
 * autotuning alone. A socket's buffer may be set again (runtime/_young-streams.ts starts it small).
 */
export function createSendBufferCap(bytes: number, sys: Syscalls | undefined): (socket: Socket, size?: number) => void {
  if (bytes === 0 || sys === undefined) return () => {};
  return (socket, size = bytes) => {
    // The kernel doubles the value (for its bookkeeping), as setsockopt(7) says.
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd === "number" && fd >= 0) sys.setsockoptInt(fd, SOL_SOCKET, SO_SNDBUF, Math.min(size, bytes));
  };
}

/**
 * The syscalls the HTTP front makes on its sockets (SO_SNDBUF here, the listening socket's copies in
 * _acceptors.ts), or undefined where they cannot load (not Linux, no FFI): then the warning says what is lost.
 */
export async function frontSyscalls(logger: Logger): Promise<Syscalls | undefined> {
  if (process.platform !== "linux") return undefined;
  try {
    const { createNodeSyscalls } = await import("../sys/sys-node.ts");
    return createNodeSyscalls();
  } catch (err) {
    const why = (err as Error).name === "KoffiMissingError"
      ? "koffi is not installed (`npm install koffi`)"
      : (err as Error).message;
    logText(
      logger,
      "warning",
      `cannot make kernel calls on client sockets (${why}): send buffers are not capped, so clients that stop reading take longer to be backpressured, and new connections are accepted one per event-loop turn`,
    );
    return undefined;
  }
}
