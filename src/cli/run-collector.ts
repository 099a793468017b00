/**
 * The exit records of one process, collected from a stream that sees every
 * CPU: which records belong to it (its tgid), when they are all in, and what
 * was lost. Completion follows the kernel (kernel/taskstats.c
 * taskstats_exit): every thread sends its own record; a group record
 * (tgid_stats) comes with the last thread only when some thread exited while
 * others remained (signal->stats is allocated then). Each CPU's records reach
 * the stream in order, but not in order across CPUs. So: the leader's record
 * and no more within a short grace is a single-threaded process; two or more
 * wait for the leader's and the group record, then for a quiet grace.
 */
import type { HostedExitEvent, TaskStatsRecord } from "@taskwire/client";
import { sumThreads } from "./thread-sum.ts";
import { formatLoss } from "./format.ts";

/** What the stream said about the process. */
export interface RunResult {
  /** Every thread record received, and their sum (undefined when none came). */
  readonly threads: readonly TaskStatsRecord[];
  readonly total: TaskStatsRecord | undefined;
  /** The kernel's group record (delays only), when one came. */
  readonly group: TaskStatsRecord | undefined;
  /** Whether everything the kernel sends for the process arrived. */
  readonly complete: boolean;
  /** Why it is incomplete (lost records, a timeout), said plainly. */
  readonly problem: string | undefined;
  /** Loss markers seen while the process ran: its records may be among them. */
  readonly losses: readonly HostedExitEvent[];
}

/** Collects a process's records: add() every event, watch() the pid once spawned, finish() after it exited. */
export interface RunCollector {
  add(ev: HostedExitEvent): void;
  watch(tgid: number): void;
  finish(waitMs: number, graceMs?: number): Promise<RunResult>;
}

/** Most events kept while the command's pid is not yet known (a spawn takes milliseconds). */
const EARLY_MAX = 65_536;

/** A collector for one run. */
export function createRunCollector(): RunCollector {
  let tgid: number | undefined;
  let early: HostedExitEvent[] = [];
  const threads: TaskStatsRecord[] = [];
  const losses: HostedExitEvent[] = [];
  let leader: TaskStatsRecord | undefined, group: TaskStatsRecord | undefined;
  let changed = () => {};
  const take = (ev: HostedExitEvent) => {
    if (ev.event.case === "lost") return void losses.push(ev);
    if (ev.event.case !== "exit" || ev.event.value.tgid !== tgid) return;
    const { pid, pidStats, tgidStats } = ev.event.value;
    if (pidStats !== undefined) threads.push(pidStats);
    if (pid === tgid) leader = pidStats;
    if (tgidStats !== undefined) group = tgidStats;
    changed();
  };
  // Every thread sends its own record, the leader (pid == tgid) included, and records from different CPUs reach
  // the stream in no particular order: the group record can come before the leader's, so both are needed.
  const done = () => leader !== undefined && (group !== undefined || threads.length === 1);
  return {
    add: (ev) => (tgid === undefined ? early.length < EARLY_MAX && early.push(ev) : take(ev)),
    watch: (id) => {
      tgid = id;
      for (const ev of early) take(ev);
      early = [];
    },
    finish: async (waitMs, graceMs = 150) => {
      const until = Date.now() + waitMs;
      while (Date.now() < until) {
        const n = threads.length;
        // Once complete, other threads' records may still be in flight from other CPUs: wait until a grace passes quietly.
        await wait(done() ? Math.min(graceMs, until - Date.now()) : until - Date.now());
        if (done() && threads.length === n) break;
      }
      return result();
    },
  };
  function wait(ms: number): Promise<void> {
    return new Promise<void>((r) => {
      const t = setTimeout(r, ms);
      changed = () => (clearTimeout(t), r());
    });
  }
  function result(): RunResult {
    const complete = done();
    const total = threads.length === 0 ? undefined : sumThreads(threads, leader);
    return { threads, total, group, complete, problem: complete ? undefined : problem(), losses };
  }
  function problem(): string {
    const why = losses.length === 0
      ? "no loss was reported: the records did not arrive within --wait-ms"
      : `the stream reported loss while it ran: ${losses.map(_lossText).join("; ")}`;
    const what = threads.length === 0
      ? "no exit record of the command arrived"
      : "some of the command's exit records are missing (the totals below cover only the threads received)";
    return `${what}; ${why}`;
  }
}

function _lossText(ev: HostedExitEvent): string {
  return ev.event.case === "lost" ? formatLoss(ev.seq, ev.cpu, ev.event.value) : "";
}
