/**
 * The latency bench's tracefs control (_sched-trace.ts): turns the scheduler's
 * sched_switch and sched_waking on, on the "mono" clock, and puts every
 * setting back as it was found. Root only.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";

const TRACEFS = "/sys/kernel/tracing";

// What startSchedTrace sets, and to what; each file's earlier value is put back by stop().
const SETTINGS: [file: string, value: string][] = [
  ["tracing_on", "0"],
  ["trace_clock", "mono"],
  ["buffer_size_kb", "16384"],
  ["options/record-tgid", "1"],
  ["events/sched/sched_switch/enable", "1"],
  ["events/sched/sched_waking/enable", "1"],
];

/** A scheduler trace being recorded. */
export interface SchedTrace {
  /** Stops it, puts tracefs back as it was, and returns the trace's text. */
  stop(): string;
}

/**
 * What to write to a tracefs file to put back the value it read as `text`:
 * trace_clock lists every clock with the one in use in brackets, and
 * buffer_size_kb reads "7 (expanded: 1408)" on a machine that has not traced
 * since boot (the size a first use gives it, which is what is written back)
 * and "X" when the CPUs' sizes differ (undefined: left, as per-CPU sizes are
 * not saved).
 */
export function savedValue(file: string, text: string): string | undefined {
  const t = text.trim();
  if (file === "buffer_size_kb") return /\(expanded: (\d+)\)/.exec(t)?.[1] ?? /^\d+$/.exec(t)?.[0];
  return /\[(\S+)\]/.exec(t)?.[1] ?? t;
}

// Only one trace at a time in this process: a second would empty the first's buffer, and whichever stopped first
// would turn the other's events off under it (and the last to stop would leave them on).
let active = false;

/**
 * Starts recording sched_switch and sched_waking for every CPU, tracefs's
 * earlier settings kept to be put back; mounts tracefs at
 * /sys/kernel/tracing if it is not there. Throws, saying what is missing,
 * without root or tracefs, or while another trace has the sched events on.
 */
export function startSchedTrace(): SchedTrace {
  if (process.getuid?.() !== 0) throw new Error("a sched trace needs root");
  const before = saved();
  if (active || before.some(([file, value]) => file.startsWith("events/") && value === "1")) {
    throw new Error(
      `a sched trace is already on (${TRACEFS}/events/sched/sched_{switch,waking}/enable): ` +
        "wait for it to end, or write 0 to both files if it was left by a process that was killed",
    );
  }
  try {
    for (const [file, value] of SETTINGS) put(file, value);
    put("trace", ""); // emptied
    put("tracing_on", "1");
  } catch (err) {
    restore(before);
    throw err;
  }
  active = true;
  return {
    stop() {
      let text: string;
      try {
        put("tracing_on", "0");
        text = readFileSync(`${TRACEFS}/trace`, "utf8");
      } finally {
        active = false;
        restore(before);
      }
      return text;
    },
  };
}

// tracefs's settings that startSchedTrace changes, as they are now (mounting tracefs where it is not).
function saved(): [string, string | undefined][] {
  try {
    // Not mounted on a fresh machine (the kernel has it; debugfs's tracing/ mounts it too): mounted here, and left.
    if (!existsSync(`${TRACEFS}/trace`)) execFileSync("mount", ["-t", "tracefs", "nodev", TRACEFS], { stdio: "pipe" });
    return SETTINGS.map(([file]) => [file, savedValue(file, readFileSync(`${TRACEFS}/${file}`, "utf8"))]);
  } catch (err) {
    throw new Error(`a sched trace needs tracefs at ${TRACEFS} (${(err as Error).message.split("\n")[0]})`);
  }
}

const put = (file: string, value: string) => writeFileSync(`${TRACEFS}/${file}`, value);

// Puts every setting back, tracing_on last; one that cannot be written does not keep the rest from it (the first
// error is thrown after).
function restore(before: [string, string | undefined][]): void {
  const errors: unknown[] = [];
  const back = (file: string, value: string | undefined) => {
    try {
      if (value !== undefined) put(file, value);
    } catch (err) {
      errors.push(err);
    }
  };
  back("tracing_on", "0");
  for (const [file, value] of before.slice(1).reverse()) back(file, value);
  back("tracing_on", before[0]![1]);
  if (errors.length > 0) throw errors[0];
}
