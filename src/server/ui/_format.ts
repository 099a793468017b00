/**
 * Number, time and DOM helpers of the dashboard (runs in the browser). Every
 * string from the server reaches the page through `textContent` here: comm
 * is chosen by any local user, so nothing from an event is ever parsed as
 * HTML.
 */
import { LossReason } from "@taskwire/client";

/** A new element with an optional class and text (set as textContent, never HTML). */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className !== undefined && className !== "") node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The element with this id; throws naming it when the page lacks it (a page and script out of step). */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (node === null) throw new Error(`the dashboard page has no #${id}: reload it (page and script out of step?)`);
  return node as T;
}

/** A count, short: 950, 12.3k, 4.56M. */
export function fmtCount(n: number): string {
  if (n < 1000) return String(Math.round(n));
  if (n < 1e6) return `${(n / 1e3).toFixed(n < 1e4 ? 2 : 1)}k`;
  return `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)}M`;
}

/** A duration in microseconds: 12 µs, 3.4 ms, 1.25 s, 2m05s, 3h02m. */
export function fmtUs(us: number): string {
  if (us < 1000) return `${Math.round(us)} µs`;
  if (us < 1e6) return `${(us / 1e3).toFixed(us < 1e4 ? 2 : 1)} ms`;
  const s = us / 1e6;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** A duration in nanoseconds (the kernel's delay totals), as fmtUs; 0 shows as "0". */
export function fmtNs(ns: number): string {
  return ns === 0 ? "0" : fmtUs(ns / 1000);
}

/** A size in bytes: 512 B, 4.0 KiB, 12.3 MiB, 1.20 GiB. */
export function fmtBytes(b: number): string {
  if (b < 1024) return `${b} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = b / 1024, i = 0;
  while (v >= 1024 && i < units.length - 1) (v /= 1024), i++;
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** Wall-clock time of day with milliseconds, local time: 14:03:07.123. */
export function fmtClock(ms: number): string {
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${
    String(d.getMilliseconds()).padStart(3, "0")
  }`;
}

/** A uint64 field (bigint, unset when a field mask left it out) as a number. */
export function num(v: bigint | number | undefined): number {
  return v === undefined ? 0 : Number(v);
}

const LOSS_TEXT: Record<number, string> = {
  [LossReason.SUBSCRIBER_OVERFLOW]: "subscriber overflow (this page read too slowly)",
  [LossReason.MEMORY_BUDGET]: "memory budget (the server's was full and this principal held its share of it)",
  [LossReason.KERNEL_OVERFLOW]: "kernel overflow (socket buffer full)",
  [LossReason.SOURCE_ERROR]: "source error (the server could not decode or pass them on: see its log)",
  [LossReason.RETENTION]: "retention (resumed past what the server kept)",
  [LossReason.RESTART]: "server restart (count unknown)",
};

/** Why events were lost, in words. */
export function lossText(reason: LossReason): string {
  return LOSS_TEXT[reason] ?? `reason ${reason}`;
}

/**
 * The page's URL parameters: `cpus` (a cpulist in the kernel's syntax, strides
 * "0-15:2/4" included, or "all"; anything else is "all", the server judging the
 * rest) and `buffer` (the queue size to ask for; 0, the server's default, when
 * absent or not a number).
 */
export function dashboardParams(search: string): { cpumask: string; buffer: number } {
  const params = new URLSearchParams(search);
  const cpus = params.get("cpus") ?? "";
  return {
    cpumask: /^[0-9a-z,:/-]{1,200}$/.test(cpus) ? cpus : "all",
    buffer: Math.max(0, Math.min(2 ** 31, Number.parseInt(params.get("buffer") ?? "0", 10) || 0)),
  };
}

/** Parses a cpulist ("0-3,8,10-11") into CPU numbers; [] when it is not one. */
export function parseCpulist(list: string): number[] {
  const cpus: number[] = [];
  for (const part of list.split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (m === null) return [];
    const lo = Number(m[1]), hi = Number(m[2] ?? m[1]);
    if (hi < lo || hi - lo > 4096 || cpus.length > 4096) return [];
    for (let c = lo; c <= hi; c++) cpus.push(c);
  }
  return cpus;
}

/**
 * A delay total (ns) of a task that ran `etimeUs`, or 0 when it cannot be
 * true. A thread cannot wait longer than it lived, but the kernel reports it
 * did when kernel.task_delayacct is switched on while the thread waits:
 * delayacct's *_end runs (the switch is on) against a start its *_start never
 * stamped (the switch was off), 0 or stale, so the "delay" is the time since
 * boot. Seen here: an `ls` of 55 ms with 7 h of block I/O delay, the uptime.
 */
export function delayNs(total: bigint | undefined, etimeUs: bigint | undefined): number {
  const ns = num(total);
  return ns > num(etimeUs) * 1000 + 1e6 ? 0 : ns;
}
