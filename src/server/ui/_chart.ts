/**
 * Exits per second per CPU, and lost events per second in red on the same
 * axes, over the last five minutes (uPlot). Events are counted into the
 * current second as they arrive; once a second the finished second becomes a
 * point. Past 16 CPUs the lines are CPU ranges, so the chart stays readable.
 * The y axis is arcsinh-scaled: a burst (a thread storm, a loss spike) ten
 * thousand times the usual rate does not flatten the rest of the chart.
 */
import uPlot from "uplot";
import { el } from "./_format.ts";

const POINTS = 300;
const MAX_LINES = 16;
const LOSS_COLOR = "#ff4d4f";

/** The rate chart. */
export interface RateChart {
  /** Counts one exit on `cpu`. */
  exit(cpu: number): void;
  /** Counts `n` lost events. */
  lost(n: number): void;
  /** Closes the current second: a new point per line, and the chart redrawn. Returns its exits and losses. */
  tick(nowMs: number): { exits: number; lost: number };
  /** Starts over with these CPUs (the subscription's cpumask). */
  setCpus(cpus: readonly number[]): void;
}

/** Creates the chart inside `host`. */
export function createRateChart(host: HTMLElement): RateChart {
  return new _RateChart(host);
}

class _RateChart implements RateChart {
  readonly #host: HTMLElement;
  #plot: uPlot | undefined;
  #lineOf = new Map<number, number>(); // cpu -> line index
  #lines = 0;
  #current: number[] = [];
  #currentLost = 0;
  #data: number[][] = [[]];

  constructor(host: HTMLElement) {
    this.#host = host;
    new ResizeObserver(() => this.#resize()).observe(host);
  }

  exit(cpu: number): void {
    const line = this.#lineOf.get(cpu) ?? this.#lines - 1;
    if (line >= 0) this.#current[line] = (this.#current[line] ?? 0) + 1;
  }

  lost(n: number): void {
    this.#currentLost += n;
  }

  tick(nowMs: number): { exits: number; lost: number } {
    const exits = this.#current.reduce((a, b) => a + b, 0), lost = this.#currentLost;
    this.#currentLost = 0;
    if (this.#plot === undefined) return { exits, lost }; // no subscription yet: nothing to draw on
    this.#data[0]!.push(Math.floor(nowMs / 1000));
    for (let i = 0; i < this.#lines; i++) this.#data[i + 1]!.push(this.#current[i] ?? 0);
    this.#data[this.#lines + 1]!.push(lost);
    if (this.#data[0]!.length > POINTS) { for (const s of this.#data) s.shift(); }
    this.#current = new Array<number>(this.#lines).fill(0);
    this.#plot.setData(this.#data as uPlot.AlignedData);
    return { exits, lost };
  }

  setCpus(cpus: readonly number[]): void {
    const per = Math.max(1, Math.ceil(cpus.length / MAX_LINES));
    this.#lineOf = new Map(cpus.map((cpu, i) => [cpu, Math.floor(i / per)]));
    this.#lines = Math.max(1, Math.ceil(cpus.length / per));
    const labels = Array.from({ length: this.#lines }, (_, i) => _label(cpus.slice(i * per, (i + 1) * per)));
    this.#data = [[], ...labels.map(() => []), []];
    this.#current = new Array<number>(this.#lines).fill(0);
    this.#currentLost = 0;
    this.#plot?.destroy();
    this.#host.textContent = "";
    this.#plot = new uPlot(this.#options(labels), this.#data as uPlot.AlignedData, this.#host);
  }

  #options(labels: string[]): uPlot.Options {
    const { width, height } = this.#size();
    const axis = { stroke: "#9aa4b2", grid: { stroke: "#2a3140", width: 1 }, ticks: { stroke: "#2a3140" } };
    return {
      width,
      height,
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      // arcsinh: linear near zero, logarithmic above, so a storm's spike leaves the steady rate readable.
      scales: { y: { distr: 4, asinh: 10, range: (_u, _min, max) => [0, Math.max(10, max * 1.2)] } },
      axes: [axis, { ...axis, size: 56, label: "per second", splits: (_u, _i, _min, max) => _decades(max) }],
      series: [
        {},
        ...labels.map((label, i) => ({ label, stroke: _color(i, labels.length), width: 1.5, points: { show: false } })),
        { label: "lost", stroke: LOSS_COLOR, fill: "rgba(255,77,79,0.18)", width: 3, points: { show: false } },
      ],
    };
  }

  #size(): { width: number; height: number } {
    return { width: Math.max(300, this.#host.clientWidth), height: Math.max(180, this.#host.clientHeight - 40) };
  }

  #resize(): void {
    this.#plot?.setSize(this.#size());
  }
}

// Ticks for the arcsinh scale: 0 and the powers of ten from 10 up to max (1 sits on top of 0) (uPlot's own ticks crowd every decade).
function _decades(max: number): number[] {
  const ticks = [0];
  for (let v = 10; v <= max; v *= 10) ticks.push(v);
  return ticks;
}

// Greens through blues to violets: red stays loss's colour.
function _color(i: number, n: number): string {
  const hue = 95 + (n <= 1 ? 80 : (i * 200) / (n - 1));
  return `hsl(${hue.toFixed(0)} 70% 62%)`;
}

function _label(cpus: readonly number[]): string {
  if (cpus.length === 1) return `cpu ${cpus[0]}`;
  return `cpus ${cpus[0]}-${cpus[cpus.length - 1]}`;
}

/** A placeholder shown until the first subscription says which CPUs. */
export function chartPlaceholder(host: HTMLElement): void {
  host.replaceChildren(el("p", "muted", "waiting for the first subscription…"));
}
