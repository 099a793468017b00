/**
 * The baseline: a plain taskstats listener as getdelays -l is one. One socket
 * registered for every CPU, the default receive buffer, a blocking read loop
 * on the main thread. Prints JSON counts when stdin closes.
 */
import { encodeTaskstatsGet, parseMessages } from "../src/sources/netlink/codec.ts";
import * as K from "../src/sources/netlink/constants.ts";
import { openGenlSocket, resolveFamily } from "../src/sources/netlink/genl-socket.ts";
import { loadSyscalls } from "../src/sys/load.ts";

const cpus = process.argv[2] ?? "0";
const sys = await loadSyscalls();
const sock = openGenlSocket(sys);
const family = resolveFamily(sock, K.TASKSTATS_GENL_NAME, 1);
sock.transact(
  encodeTaskstatsGet(family, 2, { type: K.TASKSTATS_CMD_ATTR_REGISTER_CPUMASK, string: cpus }),
  2,
  "register",
);
const fds = new Uint8Array(16);
const dv = new DataView(fds.buffer);
dv.setInt32(0, sock.fd, true);
dv.setInt16(4, K.POLLIN, true);
dv.setInt32(8, 0, true); // stdin: its closing ends the run
dv.setInt16(12, K.POLLIN, true);
const buf = new Uint8Array(64 * 1024);
let records = 0, enobufs = 0;
const startCpu = process.cpuUsage();
process.stdout.write("ready\n");
for (;;) {
  sys.poll(fds, 2, 1000);
  if (dv.getInt16(14, true) !== 0) break;
  for (;;) {
    const n = sys.recv(sock.fd, buf, K.MSG_DONTWAIT);
    if (n === -K.EAGAIN) break;
    if (n === -K.ENOBUFS) {
      enobufs++;
      continue;
    }
    if (n < 0) throw new Error(`recv: errno ${-n}`);
    for (const m of parseMessages(buf.subarray(0, n))) if (m.type === family) records++;
  }
}
const cpu = process.cpuUsage(startCpu);
const rcvbuf = new Int32Array(1);
sys.getsockopt(sock.fd, K.SOL_SOCKET, K.SO_RCVBUF, new Uint8Array(rcvbuf.buffer));
process.stdout.write(
  JSON.stringify({ records, drops: sock.drops(), enobufs, rcvbuf: rcvbuf[0], cpuMs: (cpu.user + cpu.system) / 1000 }) +
    "\n",
);
