/**
 * Numbers from linux/netlink.h, linux/genetlink.h, linux/taskstats.h and
 * asm-generic socket/errno headers (x86_64 and every mainstream Linux
 * architecture share these values).
 */
export const AF_NETLINK = 16;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;
export const NETLINK_GENERIC = 16;
export const SOL_SOCKET = 1;
export const SO_RCVBUF = 8;
export const SO_RCVBUFFORCE = 33;
/** getsockopt(SO_MEMINFO) fills u32[SK_MEMINFO_VARS]; index SK_MEMINFO_DROPS is sk_drops. */
export const SO_MEMINFO = 55;
export const SK_MEMINFO_VARS = 9;
export const SK_MEMINFO_DROPS = 8;
export const MSG_DONTWAIT = 0x40;
export const POLLIN = 0x1;
export const POLLERR = 0x8;
export const POLLNVAL = 0x20;
export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;

export const NLMSG_HDRLEN = 16;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_ACK = 0x4;
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLA_HDRLEN = 4;
/** nla_type & NLA_TYPE_MASK drops NLA_F_NESTED and NLA_F_NET_BYTEORDER. */
export const NLA_TYPE_MASK = 0x3fff;
export const GENL_HDRLEN = 4;

export const GENL_ID_CTRL = 0x10;
export const CTRL_CMD_GETFAMILY = 3;
export const CTRL_ATTR_FAMILY_ID = 1;
export const CTRL_ATTR_FAMILY_NAME = 2;

export const TASKSTATS_GENL_NAME = "TASKSTATS";
export const TASKSTATS_GENL_VERSION = 1;
export const TASKSTATS_CMD_GET = 1;
export const TASKSTATS_CMD_NEW = 2;
export const TASKSTATS_CMD_ATTR_PID = 1;
export const TASKSTATS_CMD_ATTR_TGID = 2;
export const TASKSTATS_CMD_ATTR_REGISTER_CPUMASK = 3;
export const TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK = 4;
export const TASKSTATS_TYPE_PID = 1;
export const TASKSTATS_TYPE_TGID = 2;
export const TASKSTATS_TYPE_STATS = 3;
export const TASKSTATS_TYPE_AGGR_PID = 4;
export const TASKSTATS_TYPE_AGGR_TGID = 5;
export const TASKSTATS_TYPE_NULL = 6;

/**
 * linux/cgroupstats.h: the cgroup commands continue the taskstats family's
 * command numbers (CGROUPSTATS_CMD_UNSPEC = __TASKSTATS_CMD_MAX = 3), while
 * their attribute numbers start again from 1 in enums of their own.
 */
export const CGROUPSTATS_CMD_GET = 4;
export const CGROUPSTATS_CMD_NEW = 5;
/** u32: a file descriptor, in the sending process, of an open cgroup directory. */
export const CGROUPSTATS_CMD_ATTR_FD = 1;
/** struct cgroupstats: five __u64 counts. */
export const CGROUPSTATS_TYPE_CGROUP_STATS = 1;
/** sizeof(struct cgroupstats). */
export const CGROUPSTATS_SIZE = 40;

export const EPERM = 1;
export const ESRCH = 3;
export const EINTR = 4;
export const EAGAIN = 11;
export const EACCES = 13;
export const EINVAL = 22;
export const ENOENT = 2;
export const ENOBUFS = 105;
export const ECONNREFUSED = 111;
export const EAFNOSUPPORT = 97;
export const EPROTONOSUPPORT = 93;
