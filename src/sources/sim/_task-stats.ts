/**
 * Plausible, monotonically growing stats for a simulated thread, computed
 * lazily from its age and a few per-thread rates (so an exit costs O(1), not
 * a tick of every live task).
 */
import type { TaskStats } from "../../gen/taskwire/kernel/v1/taskstats_pb.ts";
import { AcFlag, TASKSTATS_VERSION } from "../../kernel/taskstats.ts";
import type { Prng } from "./_prng.ts";

/** Per-thread behaviour, drawn once at spawn. */
export interface ThreadProfile {
  readonly cpuShare: number; // fraction of wall time on CPU
  readonly sysShare: number; // fraction of CPU time in the kernel
  readonly waitShare: number; // runqueue delay relative to run time
  readonly faultsPerSec: number;
  readonly ioBytesPerSec: number;
  readonly switchesPerSec: number;
  readonly rssMb: number;
  readonly vmMb: number;
}

export function drawProfile(rng: Prng): ThreadProfile {
  const busy = rng.next() < 0.2;
  return {
    cpuShare: busy ? 0.3 + 0.7 * rng.next() : 0.001 + 0.05 * rng.next(),
    sysShare: 0.05 + 0.4 * rng.next(),
    waitShare: 0.01 + 0.2 * rng.next(),
    faultsPerSec: 10 + rng.exp(2000),
    ioBytesPerSec: rng.exp(2_000_000),
    switchesPerSec: 1 + rng.exp(300),
    rssMb: 1 + rng.exp(60),
    vmMb: 8 + rng.exp(400),
  };
}

/** Who a thread is, for the identity fields. */
export interface ThreadIdentity {
  readonly pid: number;
  readonly tgid: number;
  readonly ppid: number;
  readonly comm: string;
  readonly uid: number;
  readonly gid: number;
  readonly nice: number;
  readonly startNs: number;
  readonly groupStartNs: number;
  readonly exeInode: number;
  readonly forkedOnly: boolean;
}

export interface StatsContext {
  readonly nowNs: number;
  /** Wall-clock ms of virtual time 0 (for ac_btime). */
  readonly epochMs: number;
  readonly delayacct: boolean;
}

const big = (n: number): bigint => BigInt(n > 0 ? Math.floor(n) : 0);

// One delay class: [count, total, max, min], the way delayacct reports it.
function delayClass(count: number, total: number, on: boolean): [bigint, bigint, bigint, bigint] {
  const n = Math.floor(count), t = on && n > 0 ? total : 0;
  return [on ? big(n) : 0n, big(t), big(n > 0 ? Math.min(t, (t / n) * 8) : 0), big(n > 0 ? t / n / 8 : 0)];
}

/**
 * The full v16 record of a thread at ctx.nowNs (exit or GetPid). Built as one
 * object literal so every record has the same shape (fast property access in
 * the encoder and filters; this is the sim's hot path).
 */
export function threadStats(id: ThreadIdentity, p: ThreadProfile, ctx: StatsContext, exit?: { code: number; groupDead: boolean }): TaskStats {
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
  const cpu = delayClass(switches, runNs * p.waitShare, on);
  const blkio = delayClass((ageS * p.ioBytesPerSec) / 1_000_000, (ageS * p.ioBytesPerSec) / 50, on);
  const freepages = delayClass(ageS * 0.01, ageS * 2_000, on);
  const compact = delayClass(ageS * 0.005, ageS * 5_000, on);
  const wpcopy = delayClass(ageS * p.faultsPerSec * 0.05, ageS * p.faultsPerSec * 40, on);
  const irq = delayClass(ageS * 20, ageS * 20 * 3_000, on);
  return {
    $typeName: "taskwire.kernel.v1.TaskStats",
    version: TASKSTATS_VERSION,
    acExitcode: exit?.code ?? 0,
    acFlag: flag,
    acNice: id.nice & 0xff,
    cpuCount: big(switches),
    cpuDelayTotal: cpu[1],
    blkioCount: blkio[0],
    blkioDelayTotal: blkio[1],
    swapinCount: 0n,
    swapinDelayTotal: 0n,
    cpuRunRealTotal: big(runNs),
    cpuRunVirtualTotal: big(runNs * 0.995),
    acComm: id.comm,
    acSched: 0,
    acUid: id.uid,
    acGid: id.gid,
    acPid: id.pid,
    acPpid: id.ppid,
    acBtime: btime,
    acEtime: big(ageNs / 1000),
    acUtime: big(utimeUs),
    acStime: big(stimeUs),
    acMinflt: big(ageS * p.faultsPerSec),
    acMajflt: big(ageS * p.faultsPerSec * 0.001),
    coremem: big(p.rssMb * (utimeUs + stimeUs)),
    virtmem: big(p.vmMb * (utimeUs + stimeUs)),
    hiwaterRss: big(p.rssMb * 1024),
    hiwaterVm: big(p.vmMb * 1024),
    readChar: big(readChar),
    writeChar: big(writeChar),
    readSyscalls: big(readChar / 4096 + ageS),
    writeSyscalls: big(writeChar / 4096 + ageS),
    readBytes: big(Math.floor(readChar / 4 / 4096) * 4096),
    writeBytes: big(Math.floor(writeChar / 2 / 4096) * 4096),
    cancelledWriteBytes: 0n,
    nvcsw: big(ageS * p.switchesPerSec * 0.8),
    nivcsw: big(ageS * p.switchesPerSec * 0.2),
    acUtimescaled: big(utimeUs),
    acStimescaled: big(stimeUs),
    cpuScaledRunRealTotal: big(runNs),
    freepagesCount: freepages[0],
    freepagesDelayTotal: freepages[1],
    thrashingCount: 0n,
    thrashingDelayTotal: 0n,
    acBtime64: BigInt(btime),
    compactCount: compact[0],
    compactDelayTotal: compact[1],
    acTgid: id.tgid,
    acTgetime: big((ctx.nowNs - id.groupStartNs) / 1000),
    acExeDev: 0x803n,
    acExeInode: BigInt(id.exeInode),
    wpcopyCount: wpcopy[0],
    wpcopyDelayTotal: wpcopy[1],
    irqCount: irq[0],
    irqDelayTotal: irq[1],
    cpuDelayMax: cpu[2],
    cpuDelayMin: cpu[3],
    blkioDelayMax: blkio[2],
    blkioDelayMin: blkio[3],
    swapinDelayMax: 0n,
    swapinDelayMin: 0n,
    freepagesDelayMax: freepages[2],
    freepagesDelayMin: freepages[3],
    thrashingDelayMax: 0n,
    thrashingDelayMin: 0n,
    compactDelayMax: compact[2],
    compactDelayMin: compact[3],
    wpcopyDelayMax: wpcopy[2],
    wpcopyDelayMin: wpcopy[3],
    irqDelayMax: irq[2],
    irqDelayMin: irq[3],
  };
}
