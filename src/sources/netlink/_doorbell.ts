/**
 * The reader's doorbell: an eventfd in its poll set that the main thread
 * rings after posting it a control message (watch, unwatch, stop). Nothing
 * else ends a poll of the netlink sockets early, so without it a control
 * message would wait for the poll's timeout on a quiet host. File
 * descriptors are the process's, so the main thread creates it and the
 * worker uses the same number through its own FFI.
 */
import * as K from "./constants.ts";
import { check, type Syscalls } from "../../sys/syscalls.ts";

/** The eventfd shared by the main thread (rings) and the reader worker (polls and clears). */
export interface Doorbell {
  readonly fd: number;
  /** Makes the fd readable (adds 1 to its counter); a full counter is already readable, so EAGAIN is ignored. */
  ring(): void;
  /** Reads the counter back to 0, so poll() blocks again. */
  clear(): void;
  close(): void;
}

/** A new doorbell (eventfd, non-blocking, close-on-exec). */
export function createDoorbell(sys: Syscalls): Doorbell {
  return doorbellOn(sys, check("eventfd", sys.eventfd(0, K.EFD_NONBLOCK | K.EFD_CLOEXEC)));
}

/** The doorbell `fd` (made by createDoorbell, maybe on another thread), called through `sys`. */
export function doorbellOn(sys: Syscalls, fd: number): Doorbell {
  // eventfd reads and writes exactly 8 bytes (a u64 counter): write adds, read returns it and resets it to 0.
  const one = new Uint8Array(new BigUint64Array([1n]).buffer), counter = new Uint8Array(8);
  return {
    fd,
    ring: () => void sys.write(fd, one),
    clear: () => void sys.read(fd, counter),
    close: () => void sys.close(fd),
  };
}
