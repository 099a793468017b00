/**
 * Where `watch`, `top` and `run` get their events: an AsyncIterable of the
 * SDK's exit events, each with the host it came from. Today that is one
 * server (watchExits); a fleet input (watchFleet over NATS JetStream, which
 * yields the same shape) plugs in here, in openEventInput, and nowhere else.
 */
import {
  ConnectError,
  type ExitFilter,
  type HostedExitEvent,
  ListenerNotFoundError,
  type Subscribed,
  type TaskwireClient,
  watchExits,
} from "@taskwire/client";
import { escapeControls } from "../log/logger.ts";
import { clientFor, type Connection } from "./connection.ts";
import { causeOf, UnreachableError } from "./errors.ts";
import { tasksSeen } from "./format.ts";
import { type FleetFlags, openFleetInput } from "./fleet-input.ts";
import { parseCpulist } from "../kernel/cpulist.ts";
import { quote } from "../core/errors.ts";

/** What to subscribe to, from a command's flags. */
export interface EventInputOptions {
  readonly conn: Connection;
  /** CPUs (kernel cpulist) or an existing listener: exactly one. */
  readonly cpus?: string | undefined;
  readonly listener?: string | undefined;
  readonly buffer?: number | undefined;
  /** Server-side field mask (kernel names) and filter. */
  readonly fields?: readonly string[] | undefined;
  readonly filter?: Partial<Pick<ExitFilter, "tgids" | "uids" | "commPrefix" | "nonzeroExit">> | undefined;
  /** Ends the input (and deregisters its listener). */
  readonly signal: AbortSignal;
  /** Called when the stream (re)opens. */
  readonly onSubscribed?: ((s: Subscribed) => void) | undefined;
  /** A status line for stderr (reconnects). */
  readonly status: (line: string) => void;
  /** Read the fleet's exits from NATS JetStream instead of one server (`--nats`). */
  readonly fleet?: FleetFlags | undefined;
}

/** An open event input: its events, and how to release what it holds on the server before exiting. */
export interface EventInput {
  readonly events: AsyncIterable<HostedExitEvent>;
  /** Deregisters the listener this input made, awaiting the server's answer (idempotent; errors ignored). */
  release(): Promise<void>;
}

/**
 * Opens the event input. A server that never answered fails at once (the
 * first error, with the URL and cause: a wrong --url or a server that is
 * not running is better reported than retried silently); once a stream has
 * opened, a dropped connection is retried with backoff and each retry is
 * said on stderr ("reconnecting to URL in 2.0 s: cause").
 */
export function openEventInput(o: EventInputOptions): EventInput {
  if (o.fleet !== undefined) return _fleetInput(o, o.fleet);
  const client = clientFor(o.conn);
  const own = o.listener === undefined;
  let listenerId: string | undefined;
  let host: string | undefined;
  // The SDK deregisters the listener it made as the iteration ends: that answer is awaited, not asked for twice.
  let released: Promise<void> | undefined;
  let noted: Promise<void> = Promise.resolve(); // said before the command ends, however soon that is
  const events = _hosted(
    watchExits(client, {
      ...(o.listener !== undefined ? { listenerId: o.listener } : { cpumask: o.cpus ?? "" }),
      signal: o.signal,
      ...(o.buffer !== undefined && { buffer: o.buffer }),
      ...(o.fields !== undefined && o.fields.length > 0 && { fields: [...o.fields] }),
      ...(o.filter !== undefined && { filter: o.filter }),
      onSubscribed: (s) => {
        if (listenerId === undefined && own) noted = _noteLimits(client, o);
        listenerId = s.listenerId;
        host = s.host?.hostname;
        o.onSubscribed?.(s);
      },
      onRelease: (deregistered) => (released = deregistered),
      onReconnect: (r) => {
        if (listenerId === undefined) throw new UnreachableError(o.conn.url, r.error);
        o.status(
          `reconnecting to ${o.conn.url} in ${(r.delayMs / 1000).toFixed(1)} s (attempt ${r.attempt}): ${
            escapeControls(causeOf(r.error))
          }`,
        );
      },
    }),
    () => host,
    (err) => o.listener === undefined ? err : unknownListener(err, o.listener, o.conn.url),
  );
  const deregistered = () => (own ? released ?? _deregister(client, listenerId) : Promise.resolve());
  return { events, release: () => Promise.all([noted, deregistered()]).then(() => {}) };
}

async function* _hosted(
  events: AsyncIterable<HostedExitEvent>,
  host: () => string | undefined,
  explain: (err: unknown) => unknown,
) {
  try {
    for await (const ev of events) yield Object.assign(ev, { host: ev.host ?? host() });
  } catch (err) {
    throw explain(err);
  }
}

/**
 * A --listener `id` that the server at `url` does not have for this caller, said for the user who typed it: the
 * server's "Register a new one" is a program's fix, and the CLI has no register command. Other errors pass as they
 * are; so does a listener removed while it was streamed (its error says so). Still NOT_FOUND, the server's error
 * its cause.
 */
export function unknownListener(err: unknown, id: string, url: string): unknown {
  if (!(err instanceof ListenerNotFoundError) || err.removed !== undefined) return err;
  return new ConnectError(
    `no listener ${quote(id)} of yours on ${url}: it was never registered there, was deregistered, its lease ran ` +
      "out after its last stream ended, or it is another principal's; `taskwire info --listeners` lists yours " +
      "there, or watch --cpus <cpulist> watches through a listener of its own",
    err.code,
    err.metadata,
    undefined,
    err,
  );
}

// What the stream does not say, said once on stderr after GetInfo: the server caps a queue at its --max-buffer
// without a word, so nobody counts on a depth they do not have; and a uid-limited principal's --uid filter that
// names none of its uids waits for exits that can never come.
function _noteLimits(client: TaskwireClient, o: EventInputOptions): Promise<void> {
  const asked = o.buffer ?? 0, uids = o.filter?.uids;
  if (asked === 0 && (uids === undefined || uids.length === 0)) return Promise.resolve();
  return client.getInfo({}).then((info) => {
    const notes = [bufferCapNote(asked, info.maxBuffer), uidLimitNote(uids ?? [], info)];
    for (const note of notes) if (note !== undefined) o.status(note);
  }, () => {});
}

/** What a command says when its --uid filter (`wanted`) names none of the uids the principal may see. */
export function uidLimitNote(
  wanted: readonly number[],
  info: { readonly uidLimited: boolean; readonly uids: readonly number[] },
): string | undefined {
  if (!info.uidLimited || wanted.length === 0 || wanted.some((u) => info.uids.includes(u))) return undefined;
  return `note: you see ${tasksSeen(info.uids)} (your principal's limit); --uid ${
    wanted.join(",")
  } names none of them, so no exit will come`;
}

/** What a command says when the queue it asked for (`asked` events, 0: the default) is more than the server's cap. */
export function bufferCapNote(asked: number, cap: number): string | undefined {
  if (asked === 0 || cap === 0 || asked <= cap) return undefined;
  return `note: the server caps a queue at ${cap} events (its --max-buffer); this one holds that, not ${asked}`;
}

async function _deregister(client: TaskwireClient, listenerId: string | undefined): Promise<void> {
  if (listenerId === undefined) return;
  await client.deregister({ listenerId, cpumask: "all" }).catch(() => {});
}

/** The largest CPU number `--cpus` may name with --nats (the fleet's hosts may have more CPUs than this one). */
const FLEET_MAX_CPUS = 8192;

// The fleet input connects lazily, on first iteration, so openEventInput stays synchronous for every input.
function _fleetInput(o: EventInputOptions, f: FleetFlags): EventInput {
  let release = (): Promise<void> => Promise.resolve();
  const cpus = o.cpus === undefined || o.cpus === "all" ? undefined : parseCpulist(o.cpus, FLEET_MAX_CPUS);
  async function* events(): AsyncGenerator<HostedExitEvent> {
    const input = await openFleetInput({
      ...f,
      ...(cpus !== undefined && { cpus }),
      ...(o.filter !== undefined &&
        {
          filter: {
            ...o.filter,
            ...(o.filter.uids && { uids: [...o.filter.uids] }),
            ...(o.filter.tgids && { tgids: [...o.filter.tgids] }),
          },
        }),
      signal: o.signal,
      status: o.status,
    });
    release = input.release;
    yield* input.events;
  }
  return { events: events(), release: () => release() };
}
