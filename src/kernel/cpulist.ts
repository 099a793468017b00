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
  /**
   * bitmap_parse_region() returns NULL, ending the whole list, when a region
   * without a ":used/group" suffix stops at end_of_str() ('\0' or '\n'):
   * "1\n2" is CPU 1 only, and whatever follows the newline is never read.
   * After a suffix it returns the position as it is, and bitmap_find_region()
   * then skips the newline as whitespace: "0-3:1/2\n5" is 0, 2 and 5.
   */
  last: boolean;
}

const DIGIT = /[0-9]/;

// The kernel's isspace() on the bytes it is given (lib/ctype.c): \t \n \v \f
// \r and space. (Its Latin-1 0xA0 is also space, but in UTF-8 that byte only
// follows a lead byte, which no rule accepts.) Every other character,
// Unicode spaces included, is a byte the kernel refuses wherever it stands.
const SPACE = /^[\t\n\v\f\r ]$/;

// __end_of_region(): commas and whitespace separate regions.
function isSeparator(c: string | undefined): boolean {
  return c === "," || (c !== undefined && SPACE.test(c));
}

// end_of_str(): the kernel stops at NUL or newline.
function isEnd(c: string | undefined): boolean {
  return c === undefined || c === "\n" || c === "\0";
}

/** Most characters of a cpulist an error message echoes (as core/errors.ts quote() does; kernel/ imports no core). */
const ECHO_MAX = 64;

// The text as a message quotes it: JSON-escaped; when long, clipped and its length given.
function quote(text: string): string {
  return text.length <= ECHO_MAX
    ? JSON.stringify(text)
    : `${JSON.stringify(`${head(text)}…`)} (${text.length} characters)`;
}

// A list derived from the text, clipped the same way.
function clip(text: string): string {
  return text.length <= ECHO_MAX ? text : `${head(text)}… (${text.length} characters)`;
}

function head(text: string): string {
  return text.slice(0, /[\ud800-\udbff]/.test(text[ECHO_MAX - 1]!) ? ECHO_MAX - 1 : ECHO_MAX);
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
    const at = this.pos < this.text.length ? JSON.stringify(this.text.slice(this.pos, this.pos + 12)) : "the end";
    throw new CpulistError("EINVAL", `cpulist ${quote(this.text)}: ${what} at ${at} (position ${this.pos})`);
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
        `cpulist ${quote(this.text)}: ${quote(this.text.slice(from, this.pos))} does not fit in 32 bits`,
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
  // strncasecmp(str, "all", 3): ASCII case only.
  if (/^all$/i.test(cur.text.slice(cur.pos, cur.pos + 3))) {
    cur.pos += 3;
    start = 0;
    end = cur.lastbit;
  } else {
    start = end = cur.number();
    if (cur.endOfRegion()) return whole(cur, start, end);
    if (cur.peek() !== "-") cur.fail('expected "-", "," or the end');
    cur.pos++;
    end = cur.number();
  }
  if (cur.endOfRegion()) return whole(cur, start, end);
  if (cur.peek() !== ":") cur.fail('expected ":used/group", "," or the end');
  cur.pos++;
  const used = cur.number();
  if (cur.peek() !== "/") cur.fail('expected "/group"');
  cur.pos++;
  return { start, end, used, group: cur.number(), last: false };
}

// no_pattern: off = group_len = end + 1, in unsigned int: for end 4294967295
// both wrap to 0, which bitmap_check_region() refuses as EINVAL (group 0)
// before its ERANGE check.
function whole(cur: _Cursor, start: number, end: number): Region {
  const size = (end + 1) >>> 0;
  return { start, end, used: size, group: size, last: isEnd(cur.peek()) };
}

// bitmap_check_region()
function checkRegion(text: string, r: Region, nbits: number): void {
  const spec = `${r.start}-${r.end}:${r.used}/${r.group}`;
  if (r.start > r.end) {
    throw new CpulistError("EINVAL", `cpulist ${quote(text)}: range ${r.start}-${r.end} runs backwards`);
  }
  if (r.group === 0 && r.end === 0xffffffff && r.used === 0) {
    // whole(): no pattern was written; the wrap is the kernel's, so name the CPU, not a group the user never gave.
    throw new CpulistError(
      "EINVAL",
      `cpulist ${quote(text)}: CPU ${r.end} is past the last CPU number the kernel's parser takes, 4294967294`,
    );
  }
  if (r.group === 0) throw new CpulistError("EINVAL", `cpulist ${quote(text)}: group size 0 in ${spec}`);
  if (r.used > r.group) {
    throw new CpulistError("EINVAL", `cpulist ${quote(text)}: ${spec} uses more CPUs than the group holds`);
  }
  if (r.end >= nbits) {
    throw new CpulistError("ERANGE", `cpulist ${quote(text)}: CPU ${r.end} is beyond the last CPU ${nbits - 1}`);
  }
}

// bitmap_set_region(): each group sets min(end - base + 1, used) bits from
// its base. `start += group_len` is unsigned int arithmetic, so a group
// within `start` of 2^32 wraps around below `start` and sets groups there too
// ("5-7:1/4294967295" on 8 bits is CPUs 0-5). The walk stays within 0..end,
// so it ends after at most end + 1 groups. Each group is one +1/-1 pair in
// `depth` (a difference array over the CPUs), whatever the groups overlap.
// Returns how many groups it stepped through.
function setRegion(r: Region, depth: Int32Array, budget: number): number {
  if (r.used === 0) return 0;
  // Groups that touch or overlap and never wrap (every plain "N", "N-M" and "all"): one run.
  if (r.used >= r.group && r.end + r.group < 2 ** 32) {
    depth[r.start]!++;
    depth[r.end + 1]!--;
    return 1;
  }
  let steps = 0;
  for (let base = r.start; base <= r.end && steps < budget; base = (base + r.group) >>> 0, steps++) {
    depth[base]!++;
    depth[Math.min(r.end, base + r.used - 1) + 1]!--;
  }
  return steps;
}

/**
 * Group steps a list may take per CPU of its bitmap. The kernel walks every
 * group of every region; a list within the length limit (100 + 6 bytes per
 * CPU) can hold thousands of regions of thousands of groups each ("0-4095:1/2"
 * over and over, shifted), and merging them cost seconds on 4,096 CPUs. Lists
 * that name CPUs plainly take one step per range, and one per group of a
 * ":used/group" pattern: 8 per CPU leaves room for any list a person writes.
 */
export const CPULIST_STEPS_PER_CPU = 8;

// The sorted CPUs the regions set, each once; the same region twice is walked once.
function cover(text: string, regions: readonly Region[], nbits: number): number[] {
  const distinct = new Map(regions.map((r) => [`${r.start}-${r.end}:${r.used}/${r.group}`, r]));
  let top = -1;
  for (const r of distinct.values()) if (r.used > 0) top = Math.max(top, r.end);
  const depth = new Int32Array(top + 2);
  const budget = CPULIST_STEPS_PER_CPU * nbits;
  let steps = 0;
  for (const r of distinct.values()) {
    steps += setRegion(r, depth, budget - steps + 1);
    if (steps > budget) {
      throw new CpulistError(
        "E2BIG",
        `cpulist ${quote(text)}: its regions step through more than ${budget} groups ` +
          `(${CPULIST_STEPS_PER_CPU} per CPU of ${nbits}); name the CPUs as plain ranges, e.g. "0-3,8-11"`,
      );
    }
  }
  const cpus: number[] = [];
  for (let cpu = 0, d = 0; cpu <= top; cpu++) if ((d += depth[cpu]!) > 0) cpus.push(cpu);
  return cpus;
}

/**
 * bitmap_parselist() for a bitmap of `nbits` CPUs: returns the sorted CPUs.
 * An empty list parses to no CPUs (the kernel accepts it; callers decide).
 */
export function parseCpulist(text: string, nbits: number): number[] {
  if (!Number.isInteger(nbits) || nbits < 1) throw new RangeError(`nbits must be a positive integer, got ${nbits}`);
  const cur = new _Cursor(text, nbits - 1);
  const regions: Region[] = [];
  for (;;) {
    // bitmap_find_region(): skips separators (a newline among them), then stops only at '\0' or the end.
    while (isSeparator(cur.peek())) cur.pos++;
    if (isEnd(cur.peek())) break;
    const region = parseRegion(cur);
    checkRegion(text, region, nbits);
    regions.push(region);
    if (region.last) break;
  }
  return cover(text, regions, nbits);
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
 * E2BIG; malformed is EINVAL (EOVERFLOW for a number past 32 bits); a CPU
 * at or past nr_cpu_ids is ERANGE (cpulist_parse() parses nr_cpumask_bits
 * bits); one below it but outside cpu_possible_mask is EINVAL. The kernel
 * accepts an empty mask and registers nothing; taskwire refuses it (EINVAL),
 * as a listener on no CPUs would never get an event. Returns the sorted CPUs
 * (never empty).
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
    if (err instanceof CpulistError && err.errno === "ERANGE") {
      const prefix = `cpulist ${quote(text)}: `;
      const why = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
      throw notPossible(text, possible, why, "ERANGE");
    }
    throw err;
  }
  if (cpus.length === 0) {
    throw new CpulistError(
      "EINVAL",
      `cpumask is empty; name CPUs from the possible set ${possible.list}, e.g. "${possible.list}"`,
    );
  }
  const outside = cpus.filter((cpu) => !possible.has(cpu));
  if (outside.length > 0) throw notPossible(text, possible, `CPU ${clip(formatCpulist(outside))} is not possible`);
  return cpus;
}

function notPossible(text: string, possible: PossibleCpus, why: string, errno: CpulistErrno = "EINVAL"): CpulistError {
  return new CpulistError(errno, `cpumask ${quote(text)}: ${why}; possible CPUs are ${possible.list}`);
}
