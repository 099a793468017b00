/**
 * Caps accepted TCP sockets' kernel send buffer (SO_SNDBUF). Linux autotunes
 * it up to net.ipv4.tcp_wmem's maximum (4 MiB by default), and a client that
 * stops reading has all of that filled before its stream feels backpressure:
 * a thousand stuck clients then take seconds of the event loop (where records
 * are dispatched) being written to. With a cap, backpressure reaches the
 * listener's bounded queue, where overflow is counted and reported, after a
 * few hundred KiB. Node has no API for it; the FFI the netlink source already
 * uses makes the one call. Where that cannot load (not Linux, no FFI), sockets
 * keep the kernel's default and this says so once.
 */
import type { Socket } from "node:net";
import type { Logger } from "@logtape/logtape";
import { logText } from "../log/logger.ts";

const SOL_SOCKET = 1;
const SO_SNDBUF = 7;

type SetInt = (fd: number, level: number, name: number, value: number) => number;

/**
 * Applies `bytes` (or, when given, the smaller `size`) to each socket given; 0: leave the kernel's
 * autotuning alone. A socket's buffer may be set again (runtime/_young-streams.ts starts it small).
 */
export async function createSendBufferCap(
  bytes: number,
  logger: Logger,
): Promise<(socket: Socket, size?: number) => void> {
  if (bytes === 0 || process.platform !== "linux") return () => {};
  let setInt: SetInt;
  try {
    const { createNodeSyscalls } = await import("../sys/sys-node.ts");
    const sys = createNodeSyscalls();
    setInt = (fd, level, name, value) => sys.setsockoptInt(fd, level, name, value);
  } catch (err) {
    const why = (err as Error).name === "KoffiMissingError"
      ? "koffi is not installed (`npm install koffi`)"
      : (err as Error).message;
    logText(
      logger,
      "warning",
      `cannot cap socket send buffers (${why}); clients that stop reading take longer to be backpressured`,
    );
    return () => {};
  }
  return (socket, size = bytes) => {
    // The kernel doubles the value (for its bookkeeping), as setsockopt(7) says.
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd === "number" && fd >= 0) setInt(fd, SOL_SOCKET, SO_SNDBUF, Math.min(size, bytes));
  };
}
