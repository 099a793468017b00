/**
 * The netlink reader's poll() set (reader-worker.ts): its doorbell first,
 * then a socket per watched CPU. A poll wakes for a record on any socket, or
 * for the doorbell the main thread rings with each control message.
 */
import * as K from "./constants.ts";
import type { Doorbell } from "./_doorbell.ts";
import type { Syscalls } from "../../sys/syscalls.ts";

/** A watched socket as the poll set sees it. */
export interface PolledSocket {
  readonly sock: { readonly fd: number };
  /** Whether the next pass reads it: the last poll() named it (readable, or in error). */
  ready: boolean;
}

/** The doorbell and the sockets of the watched CPUs, polled together. */
export class PollSet<S extends PolledSocket> {
  readonly #sys: Syscalls;
  readonly #doorbell: Doorbell;
  #fds = new Uint8Array(0);
  #view = new DataView(this.#fds.buffer);
  #sockets: S[] = [];

  constructor(sys: Syscalls, doorbell: Doorbell) {
    this.#sys = sys;
    this.#doorbell = doorbell;
  }

  /** The watched sockets, in the order they are polled. */
  get sockets(): readonly S[] {
    return this.#sockets;
  }

  // struct pollfd { int fd; short events; short revents; }: the doorbell first, then a socket per watched CPU.
  /** Polls `sockets` from now on. */
  rebuild(sockets: Iterable<S>): void {
    this.#sockets = [...sockets];
    this.#fds = new Uint8Array(Math.max(128, 8 * (this.#sockets.length + 1))); // off-heap, like every buffer passed to the FFI
    const dv = (this.#view = new DataView(this.#fds.buffer));
    [this.#doorbell.fd, ...this.#sockets.map((s) => s.sock.fd)].forEach((fd, i) => {
      dv.setInt32(8 * i, fd, true);
      dv.setInt16(8 * i + 4, K.POLLIN, true);
    });
  }

  /**
   * Waits in poll() up to `timeoutMs` for a record on any socket or the doorbell, and marks the sockets it names to be
   * read (none when the doorbell rang, which the loop answers by letting the control message in, or the time passed).
   */
  wait(timeoutMs: number): void {
    const n = this.#sys.poll(this.#fds, this.#sockets.length + 1, timeoutMs);
    // revents (struct pollfd's last short): POLLIN, or POLLERR once the socket overran (netlink's sk_err ENOBUFS).
    const revents = (i: number): boolean => n > 0 && this.#view.getInt16(8 * i + 6, true) !== 0;
    if (revents(0)) this.#ringing();
    this.#sockets.forEach((s, i) => (s.ready = revents(i + 1)));
  }

  /** Clears the doorbell poll() named; a doorbell in error (its fd closed: POLLNVAL) would wake every poll at once. */
  #ringing(): void {
    const revents = this.#view.getInt16(6, true);
    if ((revents & (K.POLLERR | K.POLLNVAL)) !== 0) {
      throw new Error(
        `the reader's doorbell (fd ${this.#doorbell.fd}) is in error (poll revents 0x${revents.toString(16)})`,
      );
    }
    this.#doorbell.clear();
  }
}
