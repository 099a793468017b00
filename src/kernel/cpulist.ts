/**
 * The kernel's cpulist syntax ("0-3,5", "0-15:2/4", "all", "0-N"), parsed the
 * way lib/bitmap-str.c's bitmap_parselist() does, plus the extra rules
 * kernel/taskstats.c applies to a REGISTER/DEREGISTER_CPUMASK attribute.
 * Pure: no I/O.
 */

/** errno-style reason a cpulist was refused, named as the kernel names it. */
export type CpulistErrno = "EINVAL" | "ERANGE" | "EOVERFLOW" | "E2BIG";

/** A cpulist the kernel would refuse; `errno` is what the kernel returns. */
export class CpulistError extends Error {
  override readonly name = "CpulistError";
  readonly errno: CpulistErrno;
  constructor(errno: CpulistErrno, message: string) {
    super(message);
    this.errno = errno;
  }
}

/**
 * Length limit of a cpumask attribute: TASKSTATS_CPUMASK_MAXLEN is
 * (100 + 6 * NR_CPUS) bytes including the terminating NUL. taskwire cannot
 * see CONFIG_NR_CPUS, so it uses the number of possible CPUs.
 */
export function cpumaskMaxLength(nrCpus: number): number {
  return 100 + 6 * nrCpus;
}

interface Region {
  start: number;
  end: number;
  used: number;
  group: number;
}

const DIGIT = /[0-9]/;

// bitmap_find_region(): commas and whitespace may precede a region.
function isSeparator(c: string | undefined): boolean {
  return c === "," || (c !== undefined && /\s/.test(c));
}

// end_of_str(): the kernel stops at NUL or newline.
function isEnd(c: string | undefined): boolean {
  return c === undefined || c === "\n" || c === "\0";
}

class _Cursor {
  pos = 0;
  readonly text: string;
  readonly lastbit: number;
  constructor(text: string, lastbit: number) {
    this.text = text;
    this.lastbit = lastbit;
  }
  peek(): string | undefined {
    return this.text[this.pos];
  }
  fail(what: string): never {
    const at = this.text.slice(this.pos, this.pos + 12) || "end of input";
    throw new CpulistError("EINVAL", `cpulist "${this.text}": ${what} at "${at}" (position ${this.pos})`);
  }
  // bitmap_getnum(): a decimal u32, or "N" for the last bit.
  number(): number {
    if (this.peek() === "N") {
      this.pos++;
      return this.lastbit;
    }
    const from = this.pos;
    while (DIGIT.test(this.peek() ?? "")) this.pos++;
    if (this.pos === from) this.fail("expected a CPU number");
    const n = Number(this.text.slice(from, this.pos));
    if (n > 0xffffffff) {
      throw new CpulistError(
        "EOVERFLOW",
        `cpulist "${this.text}": ${this.text.slice(from, this.pos)} does not fit in 32 bits`,
      );
    }
    return n;
  }
  endOfRegion(): boolean {
    const c = this.peek();
    return isEnd(c) || isSeparator(c);
  }
}

// bitmap_parse_region(): N | N-M | N-M:used/group | all[:used/group]
function parseRegion(cur: _Cursor): Region {
  let start: number;
  let end: number;
  if (cur.text.slice(cur.pos, cur.pos + 3).toLowerCase() === "all") {
    cur.pos += 3;
    start = 0;
    end = cur.lastbit;
  } else {
    start = end = cur.number();
    if (cur.endOfRegion()) return { start, end, used: end + 1, group: end + 1 };
    if (cur.peek() !== "-") cur.fail('expected "-", "," or the end');
    cur.pos++;
    end = cur.number();
  }
  if (cur.endOfRegion()) return { start, end, used: end + 1, group: end + 1 };
  if (cur.peek() !== ":") cur.fail('expected ":used/group", "," or the end');
  cur.pos++;
  const used = cur.number();
  if (cur.peek() !== "/") cur.fail('expected "/group"');
  cur.pos++;
  return { start, end, used, group: cur.number() };
}

// bitmap_check_region()
function checkRegion(text: string, r: Region, nbits: number): void {
  const spec = `${r.start}-${r.end}:${r.used}/${r.group}`;
  if (r.start > r.end) throw new CpulistError("EINVAL", `cpulist "${text}": range ${r.start}-${r.end} runs backwards`);
  if (r.group === 0) throw new CpulistError("EINVAL", `cpulist "${text}": group size 0 in ${spec}`);
  if (r.used > r.group) {
    throw new CpulistError("EINVAL", `cpulist "${text}": ${spec} uses more CPUs than the group holds`);
  }
  if (r.end >= nbits) {
    throw new CpulistError("ERANGE", `cpulist "${text}": CPU ${r.end} is beyond the last CPU ${nbits - 1}`);
  }
}

// bitmap_set_region()
function setRegion(r: Region, into: Set<number>): void {
  for (let base = r.start; base <= r.end; base += r.group) {
    const stop = Math.min(r.end, base + r.used - 1);
    for (let cpu = base; cpu <= stop; cpu++) into.add(cpu);
  }
}

/**
 * bitmap_parselist() for a bitmap of `nbits` CPUs: returns the sorted CPUs.
 * An empty list parses to no CPUs (the kernel accepts it; callers decide).
 */
export function parseCpulist(text: string, nbits: number): number[] {
  if (!Number.isInteger(nbits) || nbits < 1) throw new RangeError(`nbits must be a positive integer, got ${nbits}`);
  const cur = new _Cursor(text, nbits - 1);
  const cpus = new Set<number>();
  for (;;) {
    while (isSeparator(cur.peek())) cur.pos++;
    if (isEnd(cur.peek())) break;
    const region = parseRegion(cur);
    checkRegion(text, region, nbits);
    setRegion(region, cpus);
  }
  return [...cpus].sort((a, b) => a - b);
}

/** Canonical cpulist of a set of CPUs ("0-3,5"), as the kernel prints one. */
export function formatCpulist(cpus: Iterable<number>): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}

/** The CPUs a source can report on: the kernel's cpu_possible_mask. */
export interface PossibleCpus {
  /** Sorted CPU numbers. */
  readonly cpus: readonly number[];
  /** Canonical cpulist, e.g. "0-7". */
  readonly list: string;
  /** Bitmap width: highest possible CPU + 1 (nr_cpu_ids). */
  readonly nbits: number;
  has(cpu: number): boolean;
}

/** Builds the possible set from CPU numbers (or a cpulist like "0-7"). */
export function createPossibleCpus(spec: readonly number[] | string): PossibleCpus {
  const cpus = typeof spec === "string" ? parseCpulist(spec, 1 << 20) : [...new Set(spec)].sort((a, b) => a - b);
  if (cpus.length === 0) throw new RangeError("the possible CPU set must not be empty");
  const members = new Set(cpus);
  return {
    cpus,
    list: formatCpulist(cpus),
    nbits: cpus[cpus.length - 1]! + 1,
    has: (cpu) => members.has(cpu),
  };
}

/**
 * Parses a cpumask from a client the way kernel/taskstats.c's parse() and
 * add_del_listener() judge it: longer than TASKSTATS_CPUMASK_MAXLEN is
 * E2BIG; empty, malformed or naming a CPU outside cpu_possible_mask is
 * EINVAL. Returns the sorted CPUs (never empty).
 */
export function parseCpumask(text: string, possible: PossibleCpus): number[] {
  const max = cpumaskMaxLength(possible.cpus.length);
  // nla_len counts the NUL the kernel needs after the string.
  const bytes = new TextEncoder().encode(text).length + 1;
  if (bytes > max) {
    throw new CpulistError(
      "E2BIG",
      `cpumask is ${bytes} bytes, over the limit of ${max} (100 + 6 x ${possible.cpus.length} CPUs)`,
    );
  }
  let cpus: number[];
  try {
    cpus = parseCpulist(text, possible.nbits);
  } catch (err) {
    if (err instanceof CpulistError && err.errno === "ERANGE") throw notPossible(text, possible, err.message);
    throw err;
  }
  if (cpus.length === 0) {
    throw new CpulistError(
      "EINVAL",
      `cpumask is empty; name CPUs from the possible set ${possible.list}, e.g. "${possible.list}"`,
    );
  }
  const outside = cpus.filter((cpu) => !possible.has(cpu));
  if (outside.length > 0) throw notPossible(text, possible, `CPU ${formatCpulist(outside)} is not possible`);
  return cpus;
}

function notPossible(text: string, possible: PossibleCpus, why: string): CpulistError {
  return new CpulistError(
    "EINVAL",
    `cpumask "${text}": ${why.replace(/^cpulist "[^"]*": /, "")}; possible CPUs are ${possible.list}`,
  );
}
