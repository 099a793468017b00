/**
 * The sim's tasks: its pooled threads and processes (records rewritten for
 * each life, never reallocated), the comms and uids they are drawn from, and
 * the helpers that make, name and unlink them. sim-kernel.ts runs their lives.
 */
import type { StatsVector } from "../../kernel/stats-vector.ts";
import { emptyProfile, type ThreadIdentity, type ThreadProfile } from "./_task-stats.ts";

// Threads and processes are pooled (see #addThread): their fields are
// rewritten when reused, fixed for each life.
export interface Thread {
  pid: number;
  proc: Process;
  readonly profile: ThreadProfile;
  /** Who it is, for the identity fields (pid, start time and comm included). */
  readonly identity: ThreadIdentity;
  index: number; // position in the flat live array
}

export interface Process {
  tgid: number;
  ppid: number;
  comm: string;
  uid: number;
  nice: number;
  startNs: number;
  exeInode: number;
  forkedOnly: boolean;
  /** Its live threads in the order they were made (a few: an array, so forks and exits allocate nothing). */
  readonly threads: Thread[];
  /** signal->stats: allocated when a thread exits while others remain. */
  stats: StatsVector | undefined;
}

export const COMMS = [
  "bash",
  "sh",
  "make",
  "cc1",
  "gcc",
  "ld",
  "as",
  "python3",
  "node",
  "sshd",
  "cron",
  "postgres",
  "nginx",
  "git",
  "grep",
  "sed",
  "awk",
  "curl",
  "tar",
  "gzip",
  "rustc",
  "java",
  "sort",
  "find",
  "ls",
  "cat",
];
export const UIDS = [0, 0, 1000, 1000, 1000, 33, 999, 65534];
export function newProcess(): Process {
  return {
    tgid: 0,
    ppid: 0,
    comm: "",
    uid: 0,
    nice: 0,
    startNs: 0.5,
    exeInode: 0,
    forkedOnly: false,
    threads: [],
    stats: undefined,
  };
}

export function newThread(proc: Process): Thread {
  const identity: ThreadIdentity = {
    pid: 0,
    tgid: 0,
    ppid: 0,
    comm: "",
    uid: 0,
    gid: 0,
    nice: 0,
    startNs: 0.5,
    groupStartNs: 0.5,
    exeInode: 0,
    forkedOnly: false,
  };
  return { pid: 0, proc, profile: emptyProfile(), identity, index: 0 };
}

export function setIdentity(id: ThreadIdentity, pid: number, startNs: number, comm: string, p: Process): void {
  id.pid = pid;
  id.tgid = p.tgid;
  id.ppid = p.ppid;
  id.comm = comm;
  id.uid = p.uid;
  id.gid = p.uid; // the sim's processes run with gid = uid
  id.nice = p.nice;
  id.startNs = startNs;
  id.groupStartNs = p.startNs;
  id.exeInode = p.exeInode;
  id.forkedOnly = p.forkedOnly;
}

// Removes `t` keeping the others' order (a group's first other thread is the one a leader's exit picks). A Map
// here grew and shrank its table as a group's threads came and went: garbage on most forks and exits.
export function removeThread(threads: Thread[], t: Thread): void {
  const at = threads.indexOf(t);
  if (at < 0) return;
  for (let i = at; i < threads.length - 1; i++) threads[i] = threads[i + 1]!;
  threads.pop();
}
