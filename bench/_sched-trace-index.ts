/**
 * The latency bench's sched trace, indexed (_sched-trace.ts): tracefs's
 * `trace` text with record-tgid on, for sched_switch and sched_waking, as
 * who ran on each CPU when, and each thread's runs and wake-ups.
 */

/** A trace, indexed: who ran where and when, and each thread's wake-ups and runs (µs of CLOCK_MONOTONIC). */
export interface TraceIndex {
  /**
   * Each CPU's runs, in order: [start, end, thread id]. Its first run, of
   * the thread its first switch took off it, starts at -Infinity (it held
   * the CPU from before the trace); its last, of the thread on it when the
   * trace ended, ends at Infinity.
   */
  runs: [start: number, end: number, tid: number][][];
  /** Each thread's process (its thread group), where the trace says. */
  tgid: Map<number, number>;
  /** Each thread's wake-ups while off every CPU, in order (one while it runs ends no wait). */
  wakings: Map<number, number[]>;
  switchIns: Map<number, number[]>;
  /** Each thread's runs, in order: [start, end, CPU]. */
  onCpu: Map<number, [start: number, end: number, cpu: number][]>;
  /** Spans some CPU's record misses (events the kernel dropped, or overwrote when its buffer filled). */
  gaps: [from: number, to: number][];
  /** How many events the kernel dropped or overwrote. */
  lost: number;
}

// A line: the task (its comm may hold spaces and dashes), its thread group or (-------), the CPU, the flags (with
// options/irq-info on, the default), the time in seconds, the event.
const LINE =
  /^\s*.*?-(\d+)\s+\(\s*([\d-]+)\)\s+\[(\d+)\]\s+(?:\S+\s+)?(\d+\.\d+):\s+(sched_switch|sched_waking):\s+(.*)$/;
// Priorities are -1 for SCHED_DEADLINE.
const SWITCH = /prev_pid=(\d+) prev_prio=-?\d+ prev_state=\S+ ==> next_comm=.* next_pid=(\d+) next_prio=-?\d+$/;
const WAKING = / pid=(\d+) prio=-?\d+ target_cpu=\d+$/;
const LOST = /^CPU:(\d+) \[LOST (?:(\d+) )?EVENTS\]/;
// Printed before a CPU's first event when some CPU's buffer filled and overwrote its oldest events.
const STARTED = /^##### CPU (\d+) buffer started ####/;
const ENTRIES = /^# entries-in-buffer\/entries-written: (\d+)\/(\d+)/;

interface State {
  index: TraceIndex;
  running: ({ tid: number; since: number } | undefined)[];
  /** Where a CPU's next run of its switch's previous thread starts, when the one on it is not known. */
  openFrom: number[];
  /** Where a CPU's record went missing, until its next event. */
  gapFrom: (number | undefined)[];
  lastAt: number[];
}

const pushTo = <T>(m: Map<number, T[]>, k: number, v: T) => {
  const a = m.get(k);
  if (a === undefined) m.set(k, [v]);
  else a.push(v);
};

/** Indexes a trace's text (tracefs's `trace` file with record-tgid on). */
export function indexTrace(text: string): TraceIndex {
  const index: TraceIndex = {
    runs: [],
    tgid: new Map(),
    wakings: new Map(),
    switchIns: new Map(),
    onCpu: new Map(),
    gaps: [],
    lost: 0,
  };
  const s: State = { index, running: [], openFrom: [], gapFrom: [], lastAt: [] };
  for (const line of text.split("\n")) {
    const m = LINE.exec(line);
    if (m === null) marker(s, line);
    else event(s, m);
  }
  for (const [cpu, was] of s.running.entries()) if (was !== undefined) endRun(s, cpu, was, Infinity);
  for (const from of s.gapFrom) if (from !== undefined) index.gaps.push([from, Infinity]);
  return index;
}

function event(s: State, m: RegExpExecArray): void {
  const [, tid, tgid, cpuText, seconds, name, rest] = m;
  const cpu = Number(cpuText), at = Math.round(Number(seconds) * 1e6);
  if (/^\d+$/.test(tgid!)) s.index.tgid.set(Number(tid), Number(tgid));
  const from = s.gapFrom[cpu];
  if (from !== undefined) {
    s.index.gaps.push([from, at]);
    s.gapFrom[cpu] = undefined;
    s.openFrom[cpu] = at;
  }
  s.lastAt[cpu] = at;
  if (name === "sched_waking") return waking(s, rest!, at);
  const sw = SWITCH.exec(rest!);
  if (sw === null) return;
  const was = s.running[cpu] ?? { tid: Number(sw[1]), since: s.openFrom[cpu] ?? -Infinity };
  endRun(s, cpu, was, at);
  s.running[cpu] = { tid: Number(sw[2]), since: at };
  pushTo(s.index.switchIns, Number(sw[2]), at);
}

function waking(s: State, rest: string, at: number): void {
  const woken = WAKING.exec(rest);
  if (woken === null) return;
  const pid = Number(woken[1]);
  if (pid !== 0 && s.running.some((r) => r?.tid === pid)) return; // on a CPU (woken as it went to sleep): no wait
  pushTo(s.index.wakings, pid, at);
}

function endRun(s: State, cpu: number, was: { tid: number; since: number }, at: number): void {
  (s.index.runs[cpu] ??= []).push([was.since, at, was.tid]);
  pushTo(s.index.onCpu, was.tid, [was.since, at, cpu]);
}

// The lines that are not events: a CPU's dropped events, a CPU's buffer starting late, the header's counts.
function marker(s: State, line: string): void {
  const lost = LOST.exec(line) ?? STARTED.exec(line);
  if (lost !== null) {
    const cpu = Number(lost[1]), was = s.running[cpu];
    if (line.startsWith("CPU:")) s.index.lost += Number(lost[2] ?? 1);
    // Who held the CPU across the gap is not known: its run ends where the record does.
    if (was !== undefined) endRun(s, cpu, was, s.lastAt[cpu]!);
    s.running[cpu] = undefined;
    s.gapFrom[cpu] = line.startsWith("CPU:") ? s.lastAt[cpu] ?? -Infinity : -Infinity;
    return;
  }
  const entries = ENTRIES.exec(line);
  if (entries !== null) s.index.lost += Math.max(0, Number(entries[2]) - Number(entries[1]));
}
