/**
 * Netlink and generic netlink framing for TASKSTATS: building requests and
 * walking replies. Pure: bytes in, bytes or values out; no syscalls.
 */
import * as K from "./constants.ts";

const align4 = (n: number): number => (n + 3) & ~3;

/** A malformed netlink message (truncated, lengths that do not add up). */
export class NetlinkFormatError extends Error {
  override readonly name = "NetlinkFormatError";
}

/** One attribute to put in a request. */
export type RequestAttr = { type: number; u32: number } | { type: number; string: string };

/** Encodes a generic netlink request: nlmsghdr + genlmsghdr + attributes. */
export function encodeGenlRequest(
  o: { family: number; cmd: number; version: number; seq: number; flags?: number; attrs: RequestAttr[] },
): Uint8Array {
  const payloads = o.attrs.map((a) => ("u32" in a ? u32le(a.u32) : new TextEncoder().encode(`${a.string}\0`)));
  const size = K.NLMSG_HDRLEN + K.GENL_HDRLEN + payloads.reduce((s, p) => s + align4(K.NLA_HDRLEN + p.length), 0);
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, size, true);
  dv.setUint16(4, o.family, true);
  dv.setUint16(6, o.flags ?? (K.NLM_F_REQUEST | K.NLM_F_ACK), true);
  dv.setUint32(8, o.seq >>> 0, true);
  dv.setUint32(12, 0, true); // nlmsg_pid 0: the kernel fills in the sender's port id
  out[16] = o.cmd;
  out[17] = o.version;
  let off = K.NLMSG_HDRLEN + K.GENL_HDRLEN;
  o.attrs.forEach((a, i) => {
    const p = payloads[i]!;
    dv.setUint16(off, K.NLA_HDRLEN + p.length, true);
    dv.setUint16(off + 2, a.type, true);
    out.set(p, off + K.NLA_HDRLEN);
    off += align4(K.NLA_HDRLEN + p.length);
  });
  return out;
}

function u32le(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}

/** CTRL_CMD_GETFAMILY for a family name. */
export function encodeGetFamily(name: string, seq: number): Uint8Array {
  return encodeGenlRequest({
    family: K.GENL_ID_CTRL,
    cmd: K.CTRL_CMD_GETFAMILY,
    version: 1,
    seq,
    attrs: [{ type: K.CTRL_ATTR_FAMILY_NAME, string: name }],
  });
}

/** TASKSTATS_CMD_GET with one command attribute (pid, tgid, register or deregister cpumask). */
export function encodeTaskstatsGet(family: number, seq: number, attr: RequestAttr, ack = true): Uint8Array {
  return encodeGenlRequest({
    family,
    cmd: K.TASKSTATS_CMD_GET,
    version: K.TASKSTATS_GENL_VERSION,
    seq,
    attrs: [attr],
    flags: K.NLM_F_REQUEST | (ack ? K.NLM_F_ACK : 0),
  });
}

/** A netlink message within a receive buffer (payload is a view, not a copy). */
export interface NlMessage {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  readonly portId: number;
  readonly payload: Uint8Array;
}

/** Splits a datagram into its netlink messages. */
export function parseMessages(buf: Uint8Array): NlMessage[] {
  const out: NlMessage[] = [];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  while (off + K.NLMSG_HDRLEN <= buf.byteLength) {
    const len = dv.getUint32(off, true);
    if (len < K.NLMSG_HDRLEN || off + len > buf.byteLength) {
      throw new NetlinkFormatError(
        `nlmsg_len ${len} at offset ${off} does not fit the ${buf.byteLength}-byte datagram`,
      );
    }
    out.push({
      type: dv.getUint16(off + 4, true),
      flags: dv.getUint16(off + 6, true),
      seq: dv.getUint32(off + 8, true),
      portId: dv.getUint32(off + 12, true),
      payload: buf.subarray(off + K.NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** The errno an NLMSG_ERROR carries (0 is an ACK), as a positive number. */
export function parseErrorPayload(payload: Uint8Array): number {
  if (payload.byteLength < 4) throw new NetlinkFormatError("NLMSG_ERROR payload shorter than its error field");
  return -new DataView(payload.buffer, payload.byteOffset, 4).getInt32(0, true);
}

/** One attribute: its type (flags masked off) and payload view. */
export interface NlAttr {
  readonly type: number;
  readonly data: Uint8Array;
}

/** Walks attributes, skipping TASKSTATS_TYPE_NULL padding wherever it appears (mk_reply() inserts it on some architectures). */
export function parseAttrs(buf: Uint8Array, skipType = K.TASKSTATS_TYPE_NULL): NlAttr[] {
  const out: NlAttr[] = [];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  while (off + K.NLA_HDRLEN <= buf.byteLength) {
    const len = dv.getUint16(off, true);
    const type = dv.getUint16(off + 2, true) & K.NLA_TYPE_MASK;
    if (len < K.NLA_HDRLEN || off + len > buf.byteLength) {
      throw new NetlinkFormatError(`nla_len ${len} at offset ${off} does not fit ${buf.byteLength} bytes`);
    }
    if (type !== skipType) out.push({ type, data: buf.subarray(off + K.NLA_HDRLEN, off + len) });
    off += align4(len);
  }
  return out;
}

/** The family id in a CTRL_CMD_NEWFAMILY reply payload. */
export function parseFamilyId(payload: Uint8Array): number {
  const attr = parseAttrs(payload.subarray(K.GENL_HDRLEN), -1).find((a) => a.type === K.CTRL_ATTR_FAMILY_ID);
  if (attr === undefined || attr.data.byteLength < 2) {
    throw new NetlinkFormatError("CTRL_CMD_GETFAMILY reply has no CTRL_ATTR_FAMILY_ID");
  }
  return new DataView(attr.data.buffer, attr.data.byteOffset, 2).getUint16(0, true);
}

/** A TASKSTATS_CMD_NEW message: the pid record and, when the group died, the tgid aggregate. */
export interface TaskstatsNew {
  pid?: { id: number; stats: Uint8Array };
  tgid?: { id: number; stats: Uint8Array };
}

function readAggregate(nest: Uint8Array, idType: number): { id: number; stats: Uint8Array } {
  let id: number | undefined;
  let stats: Uint8Array | undefined;
  for (const a of parseAttrs(nest)) {
    if (a.type === idType && a.data.byteLength >= 4) {
      id = new DataView(a.data.buffer, a.data.byteOffset, 4).getUint32(0, true);
    } else if (a.type === K.TASKSTATS_TYPE_STATS) stats = a.data;
  }
  if (id === undefined || stats === undefined) {
    throw new NetlinkFormatError(`aggregate attribute lacks its id or TASKSTATS_TYPE_STATS`);
  }
  return { id, stats };
}

/** Parses a TASKSTATS_CMD_NEW payload (genl header included). */
export function parseTaskstatsNew(payload: Uint8Array): TaskstatsNew {
  if (payload.byteLength < K.GENL_HDRLEN) throw new NetlinkFormatError("genetlink payload shorter than its header");
  const out: TaskstatsNew = {};
  for (const a of parseAttrs(payload.subarray(K.GENL_HDRLEN))) {
    if (a.type === K.TASKSTATS_TYPE_AGGR_PID) out.pid = readAggregate(a.data, K.TASKSTATS_TYPE_PID);
    else if (a.type === K.TASKSTATS_TYPE_AGGR_TGID) out.tgid = readAggregate(a.data, K.TASKSTATS_TYPE_TGID);
  }
  return out;
}

/**
 * CGROUPSTATS_CMD_GET for the cgroup directory open as `fd` in the sending
 * process: cgroupstats_user_cmd() resolves the fd with fdget() in the sender's
 * file table while it handles send(), so the directory must stay open until
 * the reply is read.
 */
export function encodeCgroupstatsGet(family: number, seq: number, fd: number): Uint8Array {
  return encodeGenlRequest({
    family,
    cmd: K.CGROUPSTATS_CMD_GET,
    version: K.TASKSTATS_GENL_VERSION,
    seq,
    attrs: [{ type: K.CGROUPSTATS_CMD_ATTR_FD, u32: fd }],
  });
}

/** struct cgroupstats (linux/cgroupstats.h), counts as numbers. */
export interface CgroupstatsCounts {
  readonly sleeping: number;
  readonly running: number;
  readonly stopped: number;
  readonly uninterruptible: number;
  readonly ioWait: number;
}

/** Parses a CGROUPSTATS_CMD_NEW payload (genl header included); undefined when it holds no stats. */
export function parseCgroupstatsNew(payload: Uint8Array): CgroupstatsCounts | undefined {
  if (payload.byteLength < K.GENL_HDRLEN) throw new NetlinkFormatError("genetlink payload shorter than its header");
  const attr = parseAttrs(payload.subarray(K.GENL_HDRLEN), -1).find((a) => a.type === K.CGROUPSTATS_TYPE_CGROUP_STATS);
  if (attr === undefined) return undefined;
  if (attr.data.byteLength < K.CGROUPSTATS_SIZE) {
    throw new NetlinkFormatError(
      `CGROUPSTATS_TYPE_CGROUP_STATS holds ${attr.data.byteLength} bytes, struct cgroupstats is ${K.CGROUPSTATS_SIZE}`,
    );
  }
  const dv = new DataView(attr.data.buffer, attr.data.byteOffset, K.CGROUPSTATS_SIZE);
  const u64 = (i: number) => Number(dv.getBigUint64(i * 8, true));
  return { sleeping: u64(0), running: u64(1), stopped: u64(2), uninterruptible: u64(3), ioWait: u64(4) };
}

/**
 * Where a TASKSTATS_CMD_NEW's parts lie in its buffer: ids, and each struct's
 * offset and length (offset -1: that aggregate is absent). Filled in place by
 * readTaskstatsNewAt, so walking a record allocates nothing.
 */
export interface TaskstatsNewAt {
  pid: number;
  pidStats: number;
  pidStatsLength: number;
  tgid: number;
  tgidStats: number;
  tgidStatsLength: number;
}

/** A TaskstatsNewAt to reuse. */
export function createTaskstatsNewAt(): TaskstatsNewAt {
  return { pid: 0, pidStats: -1, pidStatsLength: 0, tgid: 0, tgidStats: -1, tgidStatsLength: 0 };
}

/**
 * The same walk as parseTaskstatsNew over bytes [start, end) of `dv` (a
 * TASKSTATS_CMD_NEW payload, genl header included), into `out`; the netlink
 * reader's hot path. Throws NetlinkFormatError as parseTaskstatsNew does.
 */
export function readTaskstatsNewAt(dv: DataView, start: number, end: number, out: TaskstatsNewAt): void {
  if (end - start < K.GENL_HDRLEN) throw new NetlinkFormatError("genetlink payload shorter than its header");
  out.pidStats = out.tgidStats = -1;
  for (let off = start + K.GENL_HDRLEN; off + K.NLA_HDRLEN <= end;) {
    const len = attrLength(dv, off, end);
    const type = dv.getUint16(off + 2, true) & K.NLA_TYPE_MASK;
    if (type === K.TASKSTATS_TYPE_AGGR_PID) readAggregateAt(dv, off + K.NLA_HDRLEN, off + len, out, true);
    else if (type === K.TASKSTATS_TYPE_AGGR_TGID) readAggregateAt(dv, off + K.NLA_HDRLEN, off + len, out, false);
    off += align4(len);
  }
}

function attrLength(dv: DataView, off: number, end: number): number {
  const len = dv.getUint16(off, true);
  if (len < K.NLA_HDRLEN || off + len > end) {
    throw new NetlinkFormatError(`nla_len ${len} at offset ${off} does not fit ${end - off} bytes`);
  }
  return len;
}

// One aggregate nest: its id (TASKSTATS_TYPE_PID or _TGID) and TASKSTATS_TYPE_STATS.
function readAggregateAt(dv: DataView, start: number, end: number, out: TaskstatsNewAt, isPid: boolean): void {
  const idType = isPid ? K.TASKSTATS_TYPE_PID : K.TASKSTATS_TYPE_TGID;
  let id = -1, stats = -1, statsLength = 0;
  for (let off = start; off + K.NLA_HDRLEN <= end;) {
    const len = attrLength(dv, off, end);
    const type = dv.getUint16(off + 2, true) & K.NLA_TYPE_MASK;
    if (type === idType && len >= K.NLA_HDRLEN + 4) id = dv.getUint32(off + K.NLA_HDRLEN, true);
    else if (type === K.TASKSTATS_TYPE_STATS) (stats = off + K.NLA_HDRLEN), (statsLength = len - K.NLA_HDRLEN);
    off += align4(len);
  }
  if (id === -1 || stats === -1) {
    throw new NetlinkFormatError(`aggregate attribute lacks its id or TASKSTATS_TYPE_STATS`);
  }
  if (isPid) (out.pid = id), (out.pidStats = stats), (out.pidStatsLength = statsLength);
  else (out.tgid = id), (out.tgidStats = stats), (out.tgidStatsLength = statsLength);
}
