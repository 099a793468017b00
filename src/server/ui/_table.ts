/**
 * The live table: the newest exits first, with filters (comm, uid, nonzero
 * exit) and pause. The page keeps the last RING events in memory and at most
 * MAX_ROWS rows in the DOM, however fast exits come; a filter change redraws
 * from the ring. Loss rows are never filtered out. Paused, the rows stay as
 * they are while counting goes on.
 */
import { type ExitEvent, exitStatusText } from "@taskwire/client";
import { delayNs, el, fmtBytes, fmtClock, fmtNs, fmtUs, lossText, num } from "./_format.ts";

/** Most rows in the DOM. */
export const MAX_ROWS = 500;
const RING = 5000;

/** The filter inputs and the pause button. */
export interface TableControls {
  readonly comm: HTMLInputElement;
  readonly uid: HTMLInputElement;
  readonly nonzero: HTMLInputElement;
  readonly pause: HTMLButtonElement;
  readonly status: HTMLElement;
}

interface Entry {
  readonly ev: ExitEvent;
  readonly atMs: number;
}

interface Filter {
  comm: string;
  uids: Set<number> | undefined;
  nonzero: boolean;
}

/** The table. */
export interface LiveTable {
  add(ev: ExitEvent, atMs: number): void;
  /** Puts the rows that came since the last render on screen (unless paused). */
  render(): void;
}

/** Creates the table on `body`, driven by `controls`. */
export function createLiveTable(body: HTMLTableSectionElement, controls: TableControls): LiveTable {
  return new _LiveTable(body, controls);
}

class _LiveTable implements LiveTable {
  readonly #body: HTMLTableSectionElement;
  readonly #c: TableControls;
  readonly #ring: Entry[] = [];
  #total = 0; // entries ever added; entry i lives at ring[i % RING]
  #shownUpTo = 0; // entries before this index are on screen (or were filtered out)
  #paused = false;
  #filter: Filter = { comm: "", uids: undefined, nonzero: false };

  constructor(body: HTMLTableSectionElement, controls: TableControls) {
    this.#body = body;
    this.#c = controls;
    for (const input of [controls.comm, controls.uid, controls.nonzero]) {
      input.addEventListener("input", () => this.#refilter());
    }
    controls.pause.addEventListener("click", () => this.#togglePause());
  }

  add(ev: ExitEvent, atMs: number): void {
    this.#ring[this.#total % RING] = { ev, atMs };
    this.#total++;
  }

  render(): void {
    if (!this.#paused) {
      const rows = this.#rows(this.#shownUpTo, this.#total);
      this.#body.prepend(...rows);
      this.#shownUpTo = this.#total;
      while (this.#body.rows.length > MAX_ROWS) this.#body.lastElementChild!.remove();
    }
    this.#status();
  }

  // Rows for entries [from, to) that pass the filter, newest first, at most MAX_ROWS.
  #rows(from: number, to: number): HTMLTableRowElement[] {
    const rows: HTMLTableRowElement[] = [];
    for (let i = to - 1; i >= Math.max(from, to - RING, 0) && rows.length < MAX_ROWS; i--) {
      const entry = this.#ring[i % RING]!;
      if (this.#passes(entry.ev)) rows.push(_row(entry));
    }
    return rows;
  }

  #passes(ev: ExitEvent): boolean {
    if (ev.event.case !== "exit") return true;
    const s = ev.event.value.pidStats, f = this.#filter;
    if (f.nonzero && (s?.acExitcode ?? 0) === 0) return false;
    if (f.uids !== undefined && !f.uids.has(s?.acUid ?? -1)) return false;
    return f.comm === "" || (s?.acComm ?? "").toLowerCase().includes(f.comm);
  }

  #refilter(): void {
    const uids = _parseUids(this.#c.uid.value);
    this.#c.uid.classList.toggle("invalid", uids === null);
    this.#filter = {
      comm: this.#c.comm.value.trim().toLowerCase(),
      uids: uids ?? undefined,
      nonzero: this.#c.nonzero.checked,
    };
    // Paused, the redraw keeps to what was on screen when the page paused.
    this.#body.replaceChildren(...this.#rows(0, this.#shownUpTo));
    this.#status();
  }

  #togglePause(): void {
    this.#paused = !this.#paused;
    this.#c.pause.textContent = this.#paused ? "resume" : "pause";
    this.#c.pause.classList.toggle("active", this.#paused);
    document.body.classList.toggle("paused", this.#paused);
    this.render();
  }

  #status(): void {
    const held = this.#paused ? ` · paused: ${this.#total - this.#shownUpTo} newer events held back` : "";
    this.#c.status.textContent = `${this.#body.rows.length} rows (most ${MAX_ROWS})${held}`;
  }
}

// "" is no filter; null: not a list of uids.
function _parseUids(text: string): Set<number> | undefined | null {
  const parts = text.split(/[\s,]+/).filter((p) => p !== "");
  if (parts.length === 0) return undefined;
  if (!parts.every((p) => /^\d{1,10}$/.test(p))) return null;
  return new Set(parts.map(Number));
}

function _row({ ev, atMs }: Entry): HTMLTableRowElement {
  if (ev.event.case === "lost") return _lossRow(ev, ev.event.value, atMs);
  if (ev.event.case !== "exit") return el("tr");
  const x = ev.event.value, s = x.pidStats;
  const at = x.receivedAt === undefined ? atMs : Number(x.receivedAt.seconds) * 1000 + x.receivedAt.nanos / 1e6;
  const status = s?.acExitcode ?? 0;
  const tr = el("tr", status === 0 ? "exit" : "exit failed");
  const cells: [string, string][] = [
    ["time", fmtClock(at)],
    ["cpu", String(ev.cpu)],
    ["comm text", s?.acComm ?? ""],
    ["pid", String(x.pid)],
    ["tgid", String(x.tgid)],
    ["uid", String(s?.acUid ?? "")],
    ["status text", exitStatusText(status)],
    ["etime", fmtUs(num(s?.acEtime))],
    ["cputime", fmtUs(num(s?.acUtime) + num(s?.acStime))],
    ["cpudelay", fmtNs(delayNs(s?.cpuDelayTotal, s?.acEtime))],
    ["rss", fmtBytes(num(s?.hiwaterRss) * 1024)],
    ["read", fmtBytes(num(s?.readBytes))],
    ["write", fmtBytes(num(s?.writeBytes))],
  ];
  for (const [cls, text] of cells) tr.append(el("td", cls, text));
  return tr;
}

function _lossRow(
  ev: ExitEvent,
  lost: { count: bigint; firstSeq: bigint; countUnknown: boolean; reason: number },
  atMs: number,
) {
  const tr = el("tr", "lost");
  const count = lost.countUnknown ? "an unknown number of" : String(lost.count);
  const range = lost.countUnknown ? `after seq ${lost.firstSeq - 1n}` : `seq ${lost.firstSeq}-${ev.seq}`;
  const td = el("td", "text", `lost ${count} events: ${lossText(lost.reason)}, ${range}`);
  td.colSpan = 12;
  tr.append(el("td", "time", fmtClock(atMs)), td);
  return tr;
}
