/**
 * Young streams wait their turn: during a connection storm, streams already
 * flowing are written first, and new ones share a bounded batch of writes per
 * event-loop turn.
 *
 * A new SubscribeExits stream cannot be told from a stream whose client
 * never reads until its transport is full, and until then it is written as
 * fast as events come: 1,000 subscribers connecting at once used to write
 * ~800 KB each (the kernel's send buffer, the client's receive buffer and
 * both sides' stream buffers) in turns of up to a second, and an established
 * subscriber's queue overflowed meanwhile. So a stream is young until it
 * has written `graduateBytes` (more than a stalled client's transport
 * holds), and while young:
 * - at most `writesPerTurn` young writes go through per turn; a stream past
 *   that is told to wait (its write returns false, as under backpressure,
 *   and both connect-es and @hono/node-server then wait for 'drain'), and
 *   gets its 'drain' in a later turn, oldest stream first, so a storm's
 *   newcomers queue behind the streams that were there before them;
 * - its connection's kernel send buffer is small (`youngSendBuffer`), and
 *   raised to the configured size when the stream graduates.
 * Streams that have graduated are never held back.
 */
import type { Socket } from "node:net";
import { tcpSocketOf } from "./_tcp-socket.ts";

/** The part of a Node response this paces (ServerResponse and Http2ServerResponse alike). */
export interface PacedResponse {
  write(chunk: unknown, ...rest: unknown[]): boolean;
  emit(event: "drain"): boolean;
  once(event: "close", listener: () => void): unknown;
  readonly destroyed: boolean;
  readonly socket: Socket | null;
}

/** Young streams' pacing; `track` takes a streaming response as its handler starts. */
export interface YoungStreams {
  track(res: PacedResponse): void;
  /** Young streams waiting for a later turn. */
  readonly waiting: number;
}

/** How young streams are paced. */
export interface YoungStreamOptions {
  /** Young streams' writes per event-loop turn (the rest wait for a later turn). */
  readonly writesPerTurn: number;
  /** Bytes a stream writes before it is no longer young. */
  readonly graduateBytes: number;
  /** Called once per connection, when its first stream graduates (raises its send buffer). */
  readonly graduate?: (socket: Socket) => void;
}

interface Waiter {
  readonly seq: number;
  readonly res: PacedResponse;
}

/** Creates the pacing (one per listening server; all of them share the one event loop). */
export function createYoungStreams(o: YoungStreamOptions): YoungStreams {
  const waiters = createOldestFirst();
  const graduated = new WeakSet<object>();
  let used = 0;
  let seq = 0;
  let scheduled = false;
  const turn = (): void => {
    scheduled = false;
    used = 0;
    // Woken streams write in this turn's microtasks, each taking one of the turn's writes.
    for (let n = 0; n < o.writesPerTurn && waiters.size > 0; n++) {
      const w = waiters.pop()!;
      if (!w.res.destroyed) w.res.emit("drain");
    }
    if (waiters.size > 0) schedule();
  };
  const schedule = (): void => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(turn);
  };
  const graduate = (res: PacedResponse): void => {
    const socket = res.socket === null ? undefined : tcpSocketOf(res.socket);
    if (socket === undefined || graduated.has(socket)) return;
    graduated.add(socket);
    o.graduate?.(socket);
  };
  const track = (res: PacedResponse): void => {
    const me = ++seq;
    const write = res.write.bind(res);
    let bytes = 0;
    res.write = (chunk: unknown, ...rest: unknown[]): boolean => {
      const flushed = write(chunk, ...rest);
      bytes += byteLength(chunk);
      if (bytes >= o.graduateBytes) {
        res.write = write; // grown up: written like any other from now on
        graduate(res);
        return flushed;
      }
      if (!flushed) return false; // real backpressure: the transport says 'drain' itself
      schedule();
      if (used++ < o.writesPerTurn) return true;
      waiters.push({ seq: me, res });
      return false;
    };
  };
  return Object.defineProperty({ track }, "waiting", { get: () => waiters.size }) as YoungStreams;
}

function byteLength(chunk: unknown): number {
  if (typeof chunk === "string") return Buffer.byteLength(chunk);
  return (chunk as { byteLength?: number } | null)?.byteLength ?? 0;
}

// A binary heap of waiters, the lowest seq (the oldest stream) on top.
function createOldestFirst(): { push(w: Waiter): void; pop(): Waiter | undefined; readonly size: number } {
  const heap: Waiter[] = [];
  const less = (i: number, j: number): boolean => heap[i]!.seq < heap[j]!.seq;
  const swap = (i: number, j: number): void => void ([heap[i], heap[j]] = [heap[j]!, heap[i]!]);
  return {
    get size() {
      return heap.length;
    },
    push(w) {
      heap.push(w);
      for (let i = heap.length - 1; i > 0 && less(i, (i - 1) >> 1); i = (i - 1) >> 1) swap(i, (i - 1) >> 1);
    },
    pop() {
      const top = heap[0];
      const last = heap.pop();
      if (heap.length === 0 || last === undefined) return top;
      heap[0] = last;
      for (let i = 0;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < heap.length && less(l, m)) m = l;
        if (r < heap.length && less(r, m)) m = r;
        if (m === i) break;
        swap(i, m);
        i = m;
      }
      return top;
    },
  };
}
