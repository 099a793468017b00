/**
 * `taskwire top`'s numbers: exit events aggregated by a key over a sliding
 * window. Pure (time is passed in) and bounded: the window is a ring of
 * one-second buckets, each holding at most `maxGroups` groups; exits of
 * groups past the cap are folded into one "other" group. Memory is
 * O(window seconds x maxGroups) whatever the exit rate.
 *
 * Buckets are seconds since collecting began (not wall-clock seconds), and a
 * view holds every bucket that overlaps the last `windowSec` seconds, so it
 * covers between `windowSec` and `windowSec + 1` seconds once the first
 * window is full; rates divide by exactly the time covered. (With wall-clock
 * buckets and only those within the window, a view held the window less
 * most of a second, its current second only begun, yet divided by the whole
 * window: `top --once --window 1` read 0 exits a moment after a second began.)
 */
import type { HostedExitEvent, TaskStatsRecord } from "@taskwire/client";

/**
 * What exits are grouped by. There is no cgroup key: an exit record does not
 * name the task's cgroup, and when the record arrives the task is gone, so
 * /proc/<pid>/cgroup cannot be read for it (and would be the client's /proc,
 * not the server's). `host` matters for a fleet input.
 */
export type GroupBy = "comm" | "uid" | "tgid" | "host";
/** The columns top sorts by. */
export type SortKey = "exits" | "cpu" | "cpu-delay" | "io-delay" | "mem-delay" | "rss" | "io" | "failed";
/** Every group key, for --help and validation. */
export const GROUP_BYS: readonly GroupBy[] = ["comm", "uid", "tgid", "host"];
/** Every sort key. */
export const SORT_KEYS: readonly SortKey[] = [
  "exits",
  "cpu",
  "cpu-delay",
  "io-delay",
  "mem-delay",
  "rss",
  "io",
  "failed",
];
/** The group that holds exits of groups past --max-groups. */
export const OTHER = "(other)";

/** One group's sums over a bucket or the window (times: CPU in µs, delays in ns; RSS in KiB). */
export interface GroupStats {
  key: string;
  exits: number;
  failed: number;
  cpuUs: number;
  cpuDelayNs: number;
  cpuDelayCount: number;
  ioDelayNs: number;
  ioDelayCount: number;
  memDelayNs: number;
  memDelayCount: number;
  peakRssKiB: number;
  ioBytes: number;
}

/** One row of the view: the sums and the rates and averages derived from them. */
export interface TopRow extends GroupStats {
  exitsPerSec: number;
  /** Average delay per delay event, ns (0 when there was none): like getdelays' "delay average". */
  cpuDelayAvgNs: number;
  ioDelayAvgNs: number;
  memDelayAvgNs: number;
}

/** The view at one moment. */
export interface TopSnapshot {
  windowSec: number;
  /** Seconds the rates are over: the window's buckets (the window, up to a second more), or less while the first window fills. */
  coveredSec: number;
  groupBy: GroupBy;
  sort: SortKey;
  exits: number;
  lost: number;
  /** A loss whose count the server cannot know (a restart) happened in the window. */
  lostUnknown: boolean;
  groups: number;
  rows: TopRow[];
}

/** Options of createTopAggregator. */
export interface TopOptions {
  windowSec: number;
  groupBy: GroupBy;
  sort: SortKey;
  /** Most groups per second of window (the rest go to "(other)"). */
  maxGroups: number;
  /** When collecting began (ms): rates divide by the time covered, up to the window. */
  startMs: number;
  /** Events come from many hosts (a fleet): uid and tgid groups are per host, since tgid 1234 on two hosts is two processes. */
  perHost?: boolean | undefined;
}

/** Adds events, answers the current view. */
export interface TopAggregator {
  add(ev: HostedExitEvent, nowMs: number): void;
  snapshot(nowMs: number, limit?: number): TopSnapshot;
}

interface Bucket {
  second: number;
  groups: Map<string, GroupStats>;
  lost: number;
  lostUnknown: boolean;
}

/** An aggregator over a window of `windowSec` seconds. */
export function createTopAggregator(o: TopOptions): TopAggregator {
  if (!Number.isInteger(o.windowSec) || o.windowSec < 1) throw new RangeError("windowSec must be a whole number >= 1");
  if (!Number.isInteger(o.maxGroups) || o.maxGroups < 1) throw new RangeError("maxGroups must be a whole number >= 1");
  // windowSec + 1 buckets: the window's seconds and the one it has begun to leave.
  const ring: (Bucket | undefined)[] = new Array(o.windowSec + 1).fill(undefined);
  const secondOf = (nowMs: number) => Math.floor((nowMs - o.startMs) / 1000);
  const bucket = (nowMs: number): Bucket => {
    const second = secondOf(nowMs);
    const i = ((second % ring.length) + ring.length) % ring.length;
    const b = ring[i];
    if (b !== undefined && b.second === second) return b;
    return (ring[i] = { second, groups: new Map(), lost: 0, lostUnknown: false });
  };
  return {
    add(ev, nowMs) {
      const b = bucket(nowMs);
      if (ev.event.case === "lost") {
        b.lost += Number(ev.event.value.count);
        b.lostUnknown ||= ev.event.value.countUnknown;
        return;
      }
      if (ev.event.case !== "exit") return;
      const key = keyOf(ev, o.groupBy, o.perHost === true);
      const g = b.groups.get(key) ?? (b.groups.size < o.maxGroups ? newGroup(key, b) : group(OTHER, b));
      addStats(g, ev.event.value.pidStats);
    },
    snapshot(nowMs, limit = Infinity) {
      // The buckets that overlap [now - window, now]: the oldest began up to a second before the window.
      const current = secondOf(nowMs);
      const oldest = current - o.windowSec;
      const live = ring.filter((b): b is Bucket => b !== undefined && b.second >= oldest && b.second <= current);
      const merged = new Map<string, GroupStats>();
      for (const b of live) for (const g of b.groups.values()) mergeInto(merged, g);
      const since = Math.max(o.startMs, o.startMs + oldest * 1000);
      const covered = Math.max(1, (nowMs - since) / 1000);
      const rows = [...merged.values()].map((g) => toRow(g, covered)).sort(comparator(o.sort));
      return {
        windowSec: o.windowSec,
        coveredSec: covered,
        groupBy: o.groupBy,
        sort: o.sort,
        exits: rows.reduce((n, r) => n + r.exits, 0),
        lost: live.reduce((n, b) => n + b.lost, 0),
        lostUnknown: live.some((b) => b.lostUnknown),
        groups: rows.length,
        rows: rows.slice(0, limit),
      };
    },
  };
}

function keyOf(ev: HostedExitEvent, by: GroupBy, perHost: boolean): string {
  if (ev.event.case !== "exit") return "";
  const s = ev.event.value.pidStats;
  const on = perHost ? `@${ev.host ?? "?"}` : "";
  if (by === "comm") return s?.acComm ?? "?";
  if (by === "uid") return (s?.acUid === undefined ? "?" : String(s.acUid)) + on;
  if (by === "tgid") return String(ev.event.value.tgid) + on;
  return ev.host ?? "?";
}

function newGroup(key: string, b: Bucket): GroupStats {
  const g = emptyGroup(key);
  b.groups.set(key, g);
  return g;
}

// "(other)" may take the cap's one extra slot: a bucket holds at most maxGroups + 1 groups.
function group(key: string, b: Bucket): GroupStats {
  return b.groups.get(key) ?? newGroup(key, b);
}

function emptyGroup(key: string): GroupStats {
  return {
    key,
    exits: 0,
    failed: 0,
    cpuUs: 0,
    cpuDelayNs: 0,
    cpuDelayCount: 0,
    ioDelayNs: 0,
    ioDelayCount: 0,
    memDelayNs: 0,
    memDelayCount: 0,
    peakRssKiB: 0,
    ioBytes: 0,
  };
}

const n = (v: bigint | undefined) => (v === undefined ? 0 : Number(v));

/** Memory delays: swap-in, reclaim (freepages), thrashing, compaction and write-protect copy, as delaytop counts them. */
function addStats(g: GroupStats, s: TaskStatsRecord | undefined): void {
  g.exits++;
  if (s === undefined) return;
  if ((s.acExitcode ?? 0) !== 0) g.failed++;
  g.cpuUs += n(s.acUtime) + n(s.acStime);
  g.cpuDelayNs += n(s.cpuDelayTotal);
  g.cpuDelayCount += n(s.cpuCount);
  g.ioDelayNs += n(s.blkioDelayTotal);
  g.ioDelayCount += n(s.blkioCount);
  g.memDelayNs += n(s.swapinDelayTotal) + n(s.freepagesDelayTotal) + n(s.thrashingDelayTotal) +
    n(s.compactDelayTotal) + n(s.wpcopyDelayTotal);
  g.memDelayCount += n(s.swapinCount) + n(s.freepagesCount) + n(s.thrashingCount) + n(s.compactCount) +
    n(s.wpcopyCount);
  g.peakRssKiB = Math.max(g.peakRssKiB, n(s.hiwaterRss));
  g.ioBytes += n(s.readBytes) + n(s.writeBytes);
}

function mergeInto(into: Map<string, GroupStats>, g: GroupStats): void {
  const m = into.get(g.key);
  if (m === undefined) return void into.set(g.key, { ...g });
  for (const k of Object.keys(g) as (keyof GroupStats)[]) {
    if (k === "key") continue;
    m[k] = k === "peakRssKiB" ? Math.max(m[k], g[k]) : m[k] + g[k];
  }
}

function toRow(g: GroupStats, windowSec: number): TopRow {
  const avg = (ns: number, count: number) => (count === 0 ? 0 : ns / count);
  return {
    ...g,
    exitsPerSec: g.exits / windowSec,
    cpuDelayAvgNs: avg(g.cpuDelayNs, g.cpuDelayCount),
    ioDelayAvgNs: avg(g.ioDelayNs, g.ioDelayCount),
    memDelayAvgNs: avg(g.memDelayNs, g.memDelayCount),
  };
}

const SORT_FIELD: Record<SortKey, keyof TopRow> = {
  exits: "exits",
  cpu: "cpuUs",
  "cpu-delay": "cpuDelayAvgNs",
  "io-delay": "ioDelayAvgNs",
  "mem-delay": "memDelayAvgNs",
  rss: "peakRssKiB",
  io: "ioBytes",
  failed: "failed",
};

function comparator(sort: SortKey): (a: TopRow, b: TopRow) => number {
  const f = SORT_FIELD[sort];
  return (a, b) => (b[f] as number) - (a[f] as number) || a.key.localeCompare(b.key);
}
