/**
 * Stopping every live reader's worker when the process exits, through one
 * "exit" listener however many readers run.
 */
import process from "node:process";

// One "exit" listener for every live reader (one each would warn past ten), put first so that an earlier listener
// that throws cannot skip it. Process-wide because the process's exit is.
const stopping = new Set<() => void>();
let exitListener: (() => void) | undefined;

/** Runs `stop` when the process exits (on), or no longer (off). */
export function stopOnExit(stop: () => void, on: boolean): void {
  if (on) stopping.add(stop);
  else stopping.delete(stop);
  if (exitListener === undefined && stopping.size > 0) {
    exitListener = () => {
      for (const s of stopping) {
        try {
          s();
        } catch {
          // the process is exiting: the others still get their stop
        }
      }
    };
    process.prependListener("exit", exitListener);
  } else if (exitListener !== undefined && stopping.size === 0) {
    process.off("exit", exitListener);
    exitListener = undefined;
  }
}
