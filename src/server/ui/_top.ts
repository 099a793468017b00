/**
 * The top-N panel: exits aggregated by comm over a sliding window of
 * one-second buckets (like `taskwire top`), sortable by any column. Each
 * bucket holds at most MAX_COMMS names, so a storm of unique comms costs
 * bounded memory; the rest counts as "(other)".
 */
import type { Exit } from "@taskwire/client";
import { delayNs, el, fmtBytes, fmtCount, fmtNs, fmtUs, num } from "./_format.ts";

const WINDOW_S = 60;
const MAX_COMMS = 1000;
const ROWS = 12;

interface Agg {
  exits: number;
  failed: number;
  cpuUs: number;
  cpuDelayNs: number;
  ioDelayNs: number;
  memDelayNs: number;
  rssKb: number;
  ioBytes: number;
}

type Key = keyof Agg;

const COLUMNS: { key: Key; title: string; show: (v: number) => string }[] = [
  { key: "exits", title: "exits", show: fmtCount },
  { key: "failed", title: "failed", show: fmtCount },
  { key: "cpuUs", title: "CPU time", show: fmtUs },
  { key: "cpuDelayNs", title: "CPU delay", show: fmtNs },
  { key: "ioDelayNs", title: "I/O delay", show: fmtNs },
  { key: "memDelayNs", title: "mem delay", show: fmtNs },
  { key: "rssKb", title: "peak RSS", show: (kb) => fmtBytes(kb * 1024) },
  { key: "ioBytes", title: "I/O bytes", show: fmtBytes },
];

const zero = (): Agg => ({
  exits: 0,
  failed: 0,
  cpuUs: 0,
  cpuDelayNs: 0,
  ioDelayNs: 0,
  memDelayNs: 0,
  rssKb: 0,
  ioBytes: 0,
});

/** The panel. */
export interface TopPanel {
  add(exit: Exit, nowMs: number): void;
  render(nowMs: number): void;
}

/** Creates the panel in `table` (its thead gets the sort buttons). */
export function createTopPanel(table: HTMLTableElement): TopPanel {
  return new _TopPanel(table);
}

class _TopPanel implements TopPanel {
  readonly #body: HTMLTableSectionElement;
  readonly #buckets: { sec: number; byComm: Map<string, Agg> }[] = [];
  #sort: Key = "exits";

  constructor(table: HTMLTableElement) {
    const head = table.createTHead().insertRow();
    head.append(el("th", "text", "comm"));
    for (const c of COLUMNS) head.append(this.#sortButton(c.key, c.title));
    this.#body = table.createTBody();
  }

  add(exit: Exit, nowMs: number): void {
    const s = exit.pidStats;
    if (s === undefined) return;
    const sec = Math.floor(nowMs / 1000);
    const bucket = this.#bucket(sec);
    const comm = s.acComm ?? "";
    const key = bucket.size < MAX_COMMS || bucket.has(comm) ? comm : "(other)";
    let agg = bucket.get(key);
    if (agg === undefined) bucket.set(key, agg = zero());
    agg.exits++;
    if ((s.acExitcode ?? 0) !== 0) agg.failed++;
    agg.cpuUs += num(s.acUtime) + num(s.acStime);
    const delay = (total: bigint | undefined) => delayNs(total, s.acEtime);
    agg.cpuDelayNs += delay(s.cpuDelayTotal);
    agg.ioDelayNs += delay(s.blkioDelayTotal);
    agg.memDelayNs += delay(s.swapinDelayTotal) + delay(s.freepagesDelayTotal) + delay(s.thrashingDelayTotal) +
      delay(s.compactDelayTotal) + delay(s.wpcopyDelayTotal);
    agg.rssKb = Math.max(agg.rssKb, num(s.hiwaterRss));
    agg.ioBytes += num(s.readBytes) + num(s.writeBytes);
  }

  render(nowMs: number): void {
    const rows = [...this.#window(Math.floor(nowMs / 1000))].sort((a, b) => b[1][this.#sort] - a[1][this.#sort]);
    const trs = rows.slice(0, ROWS).map(([comm, agg]) => {
      const tr = el("tr");
      tr.append(el("td", "text comm", comm === "" ? "(empty)" : comm));
      for (const c of COLUMNS) tr.append(el("td", c.key === this.#sort ? "sorted" : "", c.show(agg[c.key])));
      return tr;
    });
    if (trs.length === 0) trs.push(_emptyRow(`no exits in the last ${WINDOW_S} s`));
    this.#body.replaceChildren(...trs);
  }

  #bucket(sec: number): Map<string, Agg> {
    const i = sec % WINDOW_S;
    let b = this.#buckets[i];
    if (b === undefined || b.sec !== sec) this.#buckets[i] = b = { sec, byComm: new Map() };
    return b.byComm;
  }

  #window(sec: number): Map<string, Agg> {
    const total = new Map<string, Agg>();
    for (const b of this.#buckets) {
      if (b === undefined || b.sec <= sec - WINDOW_S) continue;
      for (const [comm, agg] of b.byComm) total.set(comm, _merge(total.get(comm) ?? zero(), agg));
    }
    return total;
  }

  #sortButton(key: Key, title: string): HTMLTableCellElement {
    const th = el("th");
    const button = el("button", key === this.#sort ? "sort active" : "sort", title);
    button.type = "button";
    button.dataset["key"] = key;
    button.addEventListener("click", () => {
      this.#sort = key;
      for (const b of th.parentElement?.querySelectorAll("button.sort") ?? []) {
        b.classList.toggle("active", b === button);
      }
      this.render(Date.now());
    });
    th.append(button);
    return th;
  }
}

function _merge(a: Agg, b: Agg): Agg {
  for (const k of Object.keys(a) as Key[]) a[k] = k === "rssKb" ? Math.max(a[k], b[k]) : a[k] + b[k];
  return a;
}

function _emptyRow(text: string): HTMLTableRowElement {
  const tr = el("tr", "empty");
  const td = el("td", "muted", text);
  td.colSpan = COLUMNS.length + 1;
  tr.append(td);
  return tr;
}

/** The window the panel covers, seconds. */
export const TOP_WINDOW_S = WINDOW_S;
