/**
 * Plausible, monotonically growing stats for a simulated thread, computed
 * lazily from its age and a few per-thread rates (so an exit costs O(1), not
 * a tick of every live task).
 */
import { createStatsVector, SLOT, type StatsVector } from "../../kernel/stats-vector.ts";
import { AcFlag, DELAY_CLASSES, TASKSTATS_VERSION } from "../../kernel/taskstats.ts";
import type { Prng } from "./_prng.ts";

/** Per-thread behaviour, drawn once at spawn. */
export interface ThreadProfile {
  cpuShare: number; // fraction of wall time on CPU
  sysShare: number; // fraction of CPU time in the kernel
  waitShare: number; // runqueue delay relative to run time
  faultsPerSec: number;
  ioBytesPerSec: number;
  switchesPerSec: number;
  rssMb: number;
  vmMb: number;
}

/**
 * Draws a thread's profile into `p` (a pooled thread's, reused: at high exit
 * rates a thread lives milliseconds, and a fresh object per fork would be
 * garbage made at the same rate as the records the server must stream).
 */
export function drawProfile(rng: Prng, p: ThreadProfile = emptyProfile()): ThreadProfile {
  // Nine draws in the order the fields are listed (exp(mean) is -ln(1 - u) x mean of one draw), taken into
  // a typed array at once: returned one by one, each draw V8 did not inline was a boxed number.
  const u = DRAWS;
  rng.fill(u, 9);
  p.cpuShare = u[0]! < 0.2 ? 0.3 + 0.7 * u[1]! : 0.001 + 0.05 * u[1]!;
  p.sysShare = 0.05 + 0.4 * u[2]!;
  p.waitShare = 0.01 + 0.2 * u[3]!;
  p.faultsPerSec = 10 + exp(u[4]!, 2000);
  p.ioBytesPerSec = exp(u[5]!, 2_000_000);
  p.switchesPerSec = 1 + exp(u[6]!, 300);
  p.rssMb = 1 + exp(u[7]!, 60);
  p.vmMb = 8 + exp(u[8]!, 400);
  return p;
}

const DRAWS = new Float64Array(9);
const exp = (u: number, mean: number): number => -Math.log(1 - u) * mean;

// Doubles from the start, so V8 keeps these fields as doubles that later draws overwrite in place.
export function emptyProfile(): ThreadProfile {
  return {
    cpuShare: 0.5,
    sysShare: 0.5,
    waitShare: 0.5,
    faultsPerSec: 0.5,
    ioBytesPerSec: 0.5,
    switchesPerSec: 0.5,
    rssMb: 0.5,
    vmMb: 0.5,
  };
}

/** Who a thread is, for the identity fields. */
export interface ThreadIdentity {
  pid: number;
  tgid: number;
  ppid: number;
  comm: string;
  uid: number;
  gid: number;
  nice: number;
  startNs: number;
  groupStartNs: number;
  exeInode: number;
  forkedOnly: boolean;
}

export interface StatsContext {
  readonly nowNs: number;
  /** Wall-clock ms of virtual time 0 (for ac_btime). */
  readonly epochMs: number;
  readonly delayacct: boolean;
}

const int = (n: number): number => (n > 0 ? Math.floor(n) : 0);

// Each delay class's slots: count, total, max, min.
const DELAY_SLOTS = Object.fromEntries(DELAY_CLASSES.map((c) => [c, [
  SLOT[`${c}Count`],
  SLOT[`${c}DelayTotal`],
  SLOT[`${c}DelayMax`],
  SLOT[`${c}DelayMin`],
]])) as unknown as Record<(typeof DELAY_CLASSES)[number], readonly [number, number, number, number]>;

// One delay class the way delayacct reports it, into its four slots. Indexed, not destructured: destructuring
// runs the iterator protocol, whose bytecode kept V8 from inlining this, so each call boxed its two doubles.
function delayClass(
  s: Float64Array,
  slots: readonly [count: number, total: number, max: number, min: number],
  events: number,
  ns: number,
  on: boolean,
): void {
  const n = Math.floor(events), t = on && n > 0 ? ns : 0;
  s[slots[0]] = on ? int(n) : 0;
  s[slots[1]] = int(t);
  s[slots[2]] = int(n > 0 ? Math.min(t, (t / n) * 8) : 0);
  s[slots[3]] = int(n > 0 ? t / n / 8 : 0);
}

/**
 * The full v16 record of a thread at ctx.nowNs (exit or GetPid), as a stats
 * vector: this is the sim's hot path, and numbers cost no allocation per
 * field (a TaskStats message is built from it only when asked for).
 */
export function threadStats(
  id: ThreadIdentity,
  p: ThreadProfile,
  ctx: StatsContext,
  exit?: { code: number; groupDead: boolean },
): StatsVector {
  const ageNs = Math.max(0, ctx.nowNs - id.startNs), ageS = ageNs / 1e9;
  const runNs = ageNs * p.cpuShare;
  const utimeUs = (runNs * (1 - p.sysShare)) / 1000, stimeUs = (runNs * p.sysShare) / 1000;
  const readChar = ageS * p.ioBytesPerSec, writeChar = readChar * 0.3;
  const btime = Math.floor((ctx.epochMs + id.startNs / 1e6) / 1000);
  let flag = id.forkedOnly ? AcFlag.AFORK : 0;
  if (id.uid === 0) flag |= AcFlag.ASU;
  if (exit?.groupDead) flag |= AcFlag.AGROUP;
  if (exit !== undefined && (exit.code & 0x7f) !== 0) flag |= AcFlag.AXSIG;
  const on = ctx.delayacct;
  const switches = ageS * p.switchesPerSec + 1;
  const v = createStatsVector();
  const s = v.values;
  delayClass(s, DELAY_SLOTS.cpu, switches, runNs * p.waitShare, on);
  delayClass(s, DELAY_SLOTS.blkio, (ageS * p.ioBytesPerSec) / 1_000_000, (ageS * p.ioBytesPerSec) / 50, on);
  delayClass(s, DELAY_SLOTS.freepages, ageS * 0.01, ageS * 2_000, on);
  delayClass(s, DELAY_SLOTS.compact, ageS * 0.005, ageS * 5_000, on);
  delayClass(s, DELAY_SLOTS.wpcopy, ageS * p.faultsPerSec * 0.05, ageS * p.faultsPerSec * 40, on);
  delayClass(s, DELAY_SLOTS.irq, ageS * 20, ageS * 20 * 3_000, on);
  s[SLOT.version] = TASKSTATS_VERSION;
  s[SLOT.acExitcode] = exit?.code ?? 0;
  s[SLOT.acFlag] = flag;
  s[SLOT.acNice] = id.nice & 0xff;
  s[SLOT.cpuCount] = int(switches);
  s[SLOT.swapinCount] = 0;
  s[SLOT.swapinDelayTotal] = 0;
  s[SLOT.cpuRunRealTotal] = int(runNs);
  s[SLOT.cpuRunVirtualTotal] = int(runNs * 0.995);
  v.comm = id.comm;
  s[SLOT.acSched] = 0;
  s[SLOT.acUid] = id.uid;
  s[SLOT.acGid] = id.gid;
  s[SLOT.acPid] = id.pid;
  s[SLOT.acPpid] = id.ppid;
  s[SLOT.acBtime] = btime;
  s[SLOT.acEtime] = int(ageNs / 1000);
  s[SLOT.acUtime] = int(utimeUs);
  s[SLOT.acStime] = int(stimeUs);
  s[SLOT.acMinflt] = int(ageS * p.faultsPerSec);
  s[SLOT.acMajflt] = int(ageS * p.faultsPerSec * 0.001);
  s[SLOT.coremem] = int(p.rssMb * (utimeUs + stimeUs));
  s[SLOT.virtmem] = int(p.vmMb * (utimeUs + stimeUs));
  s[SLOT.hiwaterRss] = int(p.rssMb * 1024);
  s[SLOT.hiwaterVm] = int(p.vmMb * 1024);
  s[SLOT.readChar] = int(readChar);
  s[SLOT.writeChar] = int(writeChar);
  s[SLOT.readSyscalls] = int(readChar / 4096 + ageS);
  s[SLOT.writeSyscalls] = int(writeChar / 4096 + ageS);
  s[SLOT.readBytes] = int(Math.floor(readChar / 4 / 4096) * 4096);
  s[SLOT.writeBytes] = int(Math.floor(writeChar / 2 / 4096) * 4096);
  s[SLOT.cancelledWriteBytes] = 0;
  s[SLOT.nvcsw] = int(ageS * p.switchesPerSec * 0.8);
  s[SLOT.nivcsw] = int(ageS * p.switchesPerSec * 0.2);
  s[SLOT.acUtimescaled] = int(utimeUs);
  s[SLOT.acStimescaled] = int(stimeUs);
  s[SLOT.cpuScaledRunRealTotal] = int(runNs);
  s[SLOT.thrashingCount] = 0;
  s[SLOT.thrashingDelayTotal] = 0;
  s[SLOT.acBtime64] = btime;
  s[SLOT.acTgid] = id.tgid;
  s[SLOT.acTgetime] = int((ctx.nowNs - id.groupStartNs) / 1000);
  s[SLOT.acExeDev] = 0x803;
  s[SLOT.acExeInode] = id.exeInode;
  s[SLOT.swapinDelayMax] = 0;
  s[SLOT.swapinDelayMin] = 0;
  s[SLOT.thrashingDelayMax] = 0;
  s[SLOT.thrashingDelayMin] = 0;
  return v;
}
