/**
 * The dashboard's link to the server: GetInfo for the header, one
 * watchExits stream for the events, and a state the page always shows
 * (connecting, live, reconnecting, disconnected, needs a token). It gives
 * up only where retrying cannot help (a missing token or role, a request
 * the server refuses as invalid); after any other error watchExits does not
 * retry, it starts over after a pause.
 */
import {
  Code,
  ConnectError,
  createTaskwireClient,
  type ExitEvent,
  type GetInfoResponse,
  type HostIdentity,
  RoleRequiredError,
  type TaskwireClient,
  UnauthenticatedError,
  watchExits,
} from "@taskwire/client";

/** What the connection is doing, as the header shows it. */
export type ConnState =
  | "connecting"
  | "live"
  | "reconnecting"
  | "disconnected"
  | "needs-token"
  | "forbidden"
  | "invalid";

/** What the connection tells the page. */
export interface ConnectionHooks {
  state(state: ConnState, detail: string): void;
  info(info: GetInfoResponse): void;
  subscribed(host: HostIdentity | undefined, cpumask: string, reconnects: number): void;
  event(ev: ExitEvent): void;
}

/** What the page asked for (from its URL). */
export interface WatchSettings {
  readonly cpumask: string;
  /** The listener's queue size (0: the server's default). */
  readonly buffer: number;
}

/** A running connection. */
export interface Connection {
  /** (Re)starts with this token ("" for none). */
  start(token: string): void;
  stop(): void;
}

const RETRY_MS = 3000;
const INFO_EVERY_MS = 10_000;
// Short heartbeats: a half-open connection (a server host that vanished) is noticed in 3 of them.
const HEARTBEAT_MS = 2000;

/** Creates the connection; nothing happens until start(). */
export function createConnection(settings: WatchSettings, hooks: ConnectionHooks): Connection {
  let ctl: AbortController | undefined;
  const stop = () => {
    ctl?.abort();
    ctl = undefined;
  };
  return {
    start(token) {
      stop();
      const own = (ctl = new AbortController());
      const client = createTaskwireClient(location.origin, token === "" ? {} : { token });
      void _run(client, settings, hooks, own.signal);
    },
    stop,
  };
}

async function _run(client: TaskwireClient, settings: WatchSettings, hooks: ConnectionHooks, signal: AbortSignal) {
  const poll = setInterval(() => void _info(client, hooks, signal), INFO_EVERY_MS);
  signal.addEventListener("abort", () => clearInterval(poll), { once: true });
  while (!signal.aborted) {
    hooks.state("connecting", location.host);
    try {
      await _info(client, hooks, signal, true);
      await _watch(client, settings, hooks, signal);
    } catch (e) {
      if (signal.aborted) return;
      if (_refused(e, hooks)) return clearInterval(poll);
      hooks.state("disconnected", `${_message(e)}; retrying in ${RETRY_MS / 1000} s`);
      await _sleep(RETRY_MS, signal);
    }
  }
}

// A missing token or role, or a request the server refuses as it stands (the page's ?cpus=, ?buffer=):
// retrying cannot help, the operator must act.
function _refused(e: unknown, hooks: ConnectionHooks): boolean {
  if (e instanceof ConnectError && (e.code === Code.InvalidArgument || e.code === Code.OutOfRange)) {
    hooks.state("invalid", `${_message(e)}: fix the page's address (e.g. /ui?cpus=0-3) and reload`);
  } else if (e instanceof UnauthenticatedError) {
    hooks.state("needs-token", "this server needs a token: enter one with the read and subscribe roles");
  } else if (e instanceof RoleRequiredError) {
    hooks.state("forbidden", `${_message(e)}: use a token whose principal has the read and subscribe roles`);
  } else return false;
  return true;
}

async function _info(client: TaskwireClient, hooks: ConnectionHooks, signal: AbortSignal, strict = false) {
  try {
    hooks.info(await client.getInfo({}, { signal, timeoutMs: 5000 }));
  } catch (e) {
    if (strict) throw e; // the periodic refresh leaves errors to the stream, which reports them
  }
}

async function _watch(client: TaskwireClient, settings: WatchSettings, hooks: ConnectionHooks, signal: AbortSignal) {
  let subscriptions = 0;
  for await (
    const ev of watchExits(client, {
      cpumask: settings.cpumask,
      buffer: settings.buffer,
      heartbeatMs: HEARTBEAT_MS,
      backoff: { initialMs: 200, maxMs: 2000 },
      signal,
      onSubscribed: (s) => {
        hooks.subscribed(s.host, s.cpumask, subscriptions++);
        hooks.state("live", `CPUs ${s.cpumask}`);
        if (subscriptions > 1) void _info(client, hooks, signal); // a new server: new source, host, limits
      },
      onReconnect: (r) => {
        // The first retry may just be a dropped connection; a failed retry means the server is unreachable.
        const why = `${_message(r.error)}; retry ${r.attempt} in ${(r.delayMs / 1000).toFixed(1)} s`;
        hooks.state(r.attempt === 1 ? "reconnecting" : "disconnected", why);
      },
    })
  ) hooks.event(ev);
}

function _message(e: unknown): string {
  const raw = (e as { rawMessage?: unknown }).rawMessage;
  if (typeof raw === "string" && raw !== "") return raw;
  return e instanceof Error ? e.message : String(e);
}

function _sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });
}
