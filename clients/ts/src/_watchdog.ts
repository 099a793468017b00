/**
 * The stream's idle watchdog: `onDead` once no message came for `idleMs` of
 * time the event loop ran. After the process was stopped (SIGSTOP) or its
 * loop blocked, libuv runs the timers that fell due before it reads the
 * sockets, so the timer fires although messages sent meanwhile are waiting
 * to be read; judging the stream dead then would drop them (and resuming
 * would report them as RETENTION loss). So a firing only arms a short check,
 * and the check, too, is re-armed when it fires late (another stall); the
 * stream is dead when a check fires on time with no message in between.
 * `idleMs` is read at each touch: the stream's opening message may change it.
 */
export function createWatchdog(idleMs: () => number, onDead: () => void): { touch(): void; stop(): void } {
  let checkMs = IDLE_CHECK_MS;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let due = 0;
  let checking = false;
  const arm = (ms: number): void => {
    clearTimeout(timer);
    due = performance.now() + ms;
    timer = setTimeout(fire, ms);
  };
  const fire = (): void => {
    const late = performance.now() - due;
    if (checking && late < checkMs) return onDead();
    checking = true;
    arm(checkMs);
  };
  return {
    touch: () => {
      checking = false;
      const ms = idleMs();
      checkMs = Math.min(ms, IDLE_CHECK_MS);
      arm(ms);
    },
    stop: () => clearTimeout(timer),
  };
}

/** Longest wake-up check of the idle watchdog, ms. */
const IDLE_CHECK_MS = 1000;
