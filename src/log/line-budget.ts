/**
 * Lines per second: a log that clients can make lines in (one per call)
 * takes at most `max` a second and counts the rest, reported once the
 * second is over (by a timer, so the count is not held back until the next
 * line), as one summary.
 */

/** A per-second line budget. */
export interface LineBudget {
  /** Whether a line may be written now; if not, it is counted for the summary. */
  take(): boolean;
}

/** Creates a budget of `max` lines a second; `summarize(n)` reports n lines left out. */
export function createLineBudget(
  max: number,
  summarize: (skipped: number) => void,
  now: () => number = Date.now,
): LineBudget {
  let second = -1, written = 0, skipped = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = (): void => {
    timer = undefined;
    if (skipped > 0) summarize(skipped);
    skipped = 0;
  };
  return {
    take() {
      const s = Math.floor(now() / 1000);
      if (s !== second) {
        second = s;
        written = 0;
      }
      if (written < max) {
        written++;
        return true;
      }
      skipped++;
      if (timer === undefined) {
        timer = setTimeout(flush, 1000 - (now() % 1000));
        (timer as { unref?: () => void }).unref?.();
      }
      return false;
    },
  };
}
