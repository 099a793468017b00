/**
 * A generic netlink socket over the Syscalls interface: open, bind, size the
 * receive buffer, and run request/ACK transactions. Shared by the main
 * thread (GET requests) and the reader worker (per-CPU listeners).
 */
import { encodeGetFamily, type NlMessage, parseErrorPayload, parseFamilyId, parseMessages } from "./codec.ts";
import * as K from "./constants.ts";
import { check, SyscallError, type Syscalls } from "../../sys/syscalls.ts";

/** The kernel answered a request with an error (NLMSG_ERROR carrying errno). */
export class NetlinkRequestError extends SyscallError {
  constructor(what: string, errno: number) {
    super(what, errno);
  }
}

/** An open, bound NETLINK_GENERIC socket. */
export interface GenlSocket {
  readonly fd: number;
  /** The port id the kernel assigned (what taskstats keys listeners by). */
  readonly portId: number;
  /** Sends `request` (whose nlmsg_seq is `seq`) and returns the replies up to its ACK; throws NetlinkRequestError on an error reply. */
  transact(request: Uint8Array, seq: number, what: string, timeoutMs?: number): NlMessage[];
  /** Sets the receive buffer, forcing past rmem_max when privileged (SO_RCVBUFFORCE). Returns the size in effect. */
  setReceiveBuffer(bytes: number): number;
  /** Records the kernel dropped for this socket so far (sk_drops, which netlink_overrun() increments). */
  drops(): number;
  close(): void;
}

/** Opens and binds a NETLINK_GENERIC socket. */
export function openGenlSocket(sys: Syscalls): GenlSocket {
  const fd = check(
    "socket(AF_NETLINK, SOCK_RAW, NETLINK_GENERIC)",
    sys.socket(K.AF_NETLINK, K.SOCK_RAW | K.SOCK_CLOEXEC, K.NETLINK_GENERIC),
  );
  try {
    const addr = new Uint8Array(12);
    new DataView(addr.buffer).setUint16(0, K.AF_NETLINK, true);
    check("bind", sys.bind(fd, addr));
    check("getsockname", sys.getsockname(fd, addr));
    return new _GenlSocket(sys, fd, new DataView(addr.buffer).getUint32(4, true));
  } catch (err) {
    sys.close(fd);
    throw err;
  }
}

class _GenlSocket implements GenlSocket {
  readonly fd: number;
  readonly portId: number;
  readonly #sys: Syscalls;
  readonly #buf = new Uint8Array(64 * 1024);
  readonly #pollfd = new Uint8Array(8);

  constructor(sys: Syscalls, fd: number, portId: number) {
    this.#sys = sys;
    this.fd = fd;
    this.portId = portId;
    const dv = new DataView(this.#pollfd.buffer);
    dv.setInt32(0, fd, true);
    dv.setInt16(4, K.POLLIN, true);
  }

  transact(request: Uint8Array, seq: number, what: string, timeoutMs = 2000): NlMessage[] {
    check(`send(${what})`, this.#sys.send(this.fd, request, 0));
    const replies: NlMessage[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const n = this.#sys.recv(this.fd, this.#buf, K.MSG_DONTWAIT);
      if (n === -K.EAGAIN || n === -K.EINTR) {
        if (Date.now() > deadline) throw new SyscallError(`recv(${what})`, K.EAGAIN, `no reply within ${timeoutMs} ms`);
        this.#sys.poll(this.#pollfd, 1, 50);
        continue;
      }
      // ENOBUFS on a request socket only means unread records were dropped; the reply still comes.
      if (n === -K.ENOBUFS) continue;
      check(`recv(${what})`, n);
      for (const m of parseMessages(this.#buf.subarray(0, n))) {
        if (m.seq !== seq) continue; // an exit record or a stale reply, not ours
        if (m.type === K.NLMSG_ERROR) {
          const errno = parseErrorPayload(m.payload);
          if (errno !== 0) throw new NetlinkRequestError(what, errno);
          return replies;
        }
        replies.push({ ...m, payload: m.payload.slice() });
      }
    }
  }

  setReceiveBuffer(bytes: number): number {
    if (this.#sys.setsockoptInt(this.fd, K.SOL_SOCKET, K.SO_RCVBUFFORCE, bytes) < 0) {
      check("setsockopt(SO_RCVBUF)", this.#sys.setsockoptInt(this.fd, K.SOL_SOCKET, K.SO_RCVBUF, bytes));
    }
    // The kernel doubles the value for bookkeeping overhead and reports the doubled size.
    const out = new Int32Array(1);
    check(
      "getsockopt(SO_RCVBUF)",
      this.#sys.getsockopt(this.fd, K.SOL_SOCKET, K.SO_RCVBUF, new Uint8Array(out.buffer)),
    );
    return out[0]!;
  }

  drops(): number {
    const meminfo = new Uint32Array(K.SK_MEMINFO_VARS);
    check(
      "getsockopt(SO_MEMINFO)",
      this.#sys.getsockopt(this.fd, K.SOL_SOCKET, K.SO_MEMINFO, new Uint8Array(meminfo.buffer)),
    );
    return meminfo[K.SK_MEMINFO_DROPS]!;
  }

  close(): void {
    this.#sys.close(this.fd);
  }
}

/** Resolves a generic netlink family id by name (CTRL_CMD_GETFAMILY). */
export function resolveFamily(sock: GenlSocket, name: string, seq: number): number {
  const replies = sock.transact(encodeGetFamily(name, seq), seq, `CTRL_CMD_GETFAMILY ${name}`);
  const reply = replies.find((m) => m.type === K.GENL_ID_CTRL);
  if (reply === undefined) throw new NetlinkRequestError(`CTRL_CMD_GETFAMILY ${name}`, K.ENOENT);
  return parseFamilyId(reply.payload);
}
