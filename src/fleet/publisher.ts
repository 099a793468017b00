/**
 * The fleet publisher: every exit record of this host into a JetStream
 * stream, on `<prefix>.<host>.exits.<cpu>` (subjects.ts).
 *
 * It is one more listener of the listener core, on every CPU, with its own
 * bounded queue: records reach it exactly as they reach an RPC subscriber,
 * and when NATS is slow or down its queue fills and drops with the core's
 * own loss accounting (a loss marker with the exact seq range), which is
 * published like any event once NATS takes messages again. So a consumer of
 * the stream sees, per host, received + lost = produced, as an RPC
 * subscriber does. The kernel reader never waits on NATS: delivering to
 * this listener only queues.
 *
 * The pump (_pump.ts) drains the queue into a bounded window of JetStream
 * publishes, one message per CPU per batch taken. Each message carries one
 * SubscribeExitsResponse in protobuf binary (the RPC stream's own encoding:
 * its events are that CPU's, in seq order) and a Nats-Msg-Id of host, run
 * and first seq, so a publish retried after a lost ack is stored once.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { FleetInfoState } from "../rpc/service.ts";
import type { ServerRegistry } from "../rpc/stream.ts";
import { checkNatsSettings, connectNats, type NatsSettings } from "./_connect.ts";
import { ensureStream, MIN_MESSAGE_BYTES, StreamConfigError, type StreamSettings } from "./_stream-config.ts";
import { createPump, type Pump } from "./_pump.ts";
import { MessageLimits, REREAD_MS } from "./_message-limits.ts";
import { checkHostToken, checkPrefix, hostToken } from "./subjects.ts";

export { NatsConnectError, type NatsSettings, redactUrl, serverList } from "./_connect.ts";
export { type Retention, StreamConfigError, type StreamSettings } from "./_stream-config.ts";

/** Defaults of the publisher's flags. */
export const FLEET_DEFAULTS = Object.freeze({
  stream: "TASKWIRE_EXITS",
  prefix: "taskwire",
  retention: "limits" as const,
  maxAgeMs: 24 * 3600_000,
  maxBytes: 1024 ** 3,
  duplicateWindowMs: 120_000,
  window: 64,
  buffer: 65_536,
  ackTimeoutMs: 5000,
  lingerMs: 5,
});

/** The principal that owns the publisher's listener (shown in ListListeners as its owner). */
export const FLEET_OWNER = "taskwire:fleet-publisher";

/** Options of the publisher. */
export interface FleetOptions extends NatsSettings, Partial<Omit<StreamSettings, "name" | "prefix">> {
  /** Stream name (default TASKWIRE_EXITS). */
  readonly stream?: string | undefined;
  /** Subject prefix (default "taskwire"). */
  readonly prefix?: string | undefined;
  /** A batch (up to 1024 events) is taken only while fewer messages await their ack (default 64); a batch cut small for the limits may put more in flight. */
  readonly window?: number | undefined;
  /** The publisher's queue, events (default 65536); past it, exits are dropped with a loss marker. */
  readonly buffer?: number | undefined;
  /**
   * After a take of fewer than 1024 events while messages are in flight,
   * wait this long before the next, ms (default 5; 0: never): under load,
   * fewer and fuller messages.
   */
  readonly lingerMs?: number | undefined;
  /** How long a publish waits for its ack before it is retried, ms (default 5000). */
  readonly ackTimeoutMs?: number | undefined;
  /** The host's subject token as is (default: the server's hostname, sanitised; subjects.ts). */
  readonly hostToken?: string | undefined;
  /** While publishes fail, how often their cause is logged again, ms (default 60000). */
  readonly problemLogMs?: number | undefined;
  /** While NATS's size limits cut messages, how often they are read again, ms (default 60000; an integer >= 1000). */
  readonly limitsRefreshMs?: number | undefined;
  /** Where the publisher says what happens to its connection (warnings: disconnects, failing publishes). */
  readonly log?: ((level: "info" | "warning", text: string) => void) | undefined;
}

/** What GetInfo and /metrics show, and what the publisher's listener produced. */
export interface FleetState extends FleetInfoState {
  /** Events its listener produced so far (a consumer's received + lost adds up to it). */
  readonly produced: number;
}

/** What the server hands the publisher: its registry, the CPUs to listen on, its hostname. */
export interface FleetCore {
  readonly registry: ServerRegistry;
  readonly cpus: readonly number[];
  readonly hostname: string;
}

/** A connected publisher, started by createServer (attach) and stopped with it (close). */
export interface FleetPublisher {
  /** Makes its listener on every CPU and starts publishing. Once. */
  attach(core: FleetCore): void;
  state(): FleetState;
  /** Publishes what was queued (for at most the ack timeout), then closes the connection. */
  close(): Promise<void>;
}

/**
 * Connects to NATS and makes (or checks) the stream; NatsConnectError or
 * StreamConfigError when that fails. Warnings about an existing stream's
 * limits go to `log`.
 */
export async function startFleetPublisher(o: FleetOptions): Promise<FleetPublisher> {
  const settings = checkFleetOptions(o);
  const nc = await connectNats(o);
  let maxMsgSize;
  try {
    checkMaxPayload(nc);
    const stream = await ensureStream(await jetstreamManager(nc), settings);
    for (const w of stream.warnings) o.log?.("warning", w);
    maxMsgSize = stream.maxMsgSize;
  } catch (err) {
    await nc.close();
    throw err;
  }
  return new _Publisher(nc, o, settings, maxMsgSize);
}

/**
 * Checks `o` as startFleetPublisher does before it connects (names, limits,
 * the host token, credentials and the files they name); a RangeError says
 * what is wrong. Returns the stream's settings.
 */
export function checkFleetOptions(o: FleetOptions): StreamSettings {
  const settings = streamSettings(o);
  checkLimits(o);
  if (o.hostToken !== undefined) checkHostToken(o.hostToken);
  checkNatsSettings(o);
  return settings;
}

function streamSettings(o: FleetOptions): StreamSettings {
  const d = FLEET_DEFAULTS;
  return {
    name: checkStreamName(o.stream ?? d.stream),
    prefix: checkPrefix(o.prefix ?? d.prefix),
    retention: o.retention ?? d.retention,
    maxAgeMs: o.maxAgeMs ?? d.maxAgeMs,
    maxBytes: o.maxBytes ?? d.maxBytes,
    duplicateWindowMs: o.duplicateWindowMs ?? d.duplicateWindowMs,
  };
}

// Bad numbers are the caller's mistake, refused before anything connects. NaN would compare false for ever: a NaN
// problemLogMs logged every failed publish, a NaN limitsRefreshMs never read the limits again.
function checkLimits(o: FleetOptions): void {
  const min = {
    window: 1,
    buffer: 1,
    ackTimeoutMs: 1,
    lingerMs: 0,
    maxAgeMs: 0,
    maxBytes: 0,
    duplicateWindowMs: 1,
    problemLogMs: 1,
    limitsRefreshMs: REREAD_MS,
  };
  for (const [k, lo] of Object.entries(min)) {
    const v = o[k as keyof typeof min];
    if (v !== undefined && (!Number.isSafeInteger(v) || v < lo)) {
      throw new RangeError(`fleet option ${k} must be an integer >= ${lo}, got ${v}`);
    }
  }
}

// A server whose max_payload cannot take one exit's message would refuse it for ever.
function checkMaxPayload(nc: NatsConnection): void {
  const max = nc.info?.max_payload ?? Infinity;
  if (max < MIN_MESSAGE_BYTES) {
    throw new StreamConfigError(
      `the NATS server's max_payload is ${max} bytes, less than the ${MIN_MESSAGE_BYTES} one exit's message may need; raise max_payload in its configuration`,
    );
  }
}

function checkStreamName(name: string): string {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) {
    throw new RangeError(`--nats-stream "${name.slice(0, 40)}": use 1 to 64 of A-Z a-z 0-9 _ -`);
  }
  return name;
}

class _Publisher implements FleetPublisher {
  readonly #nc: NatsConnection;
  readonly #o: FleetOptions;
  readonly #settings: StreamSettings;
  /** The server's max_payload and the stream's max_msg_size, as read last. */
  readonly #limits: MessageLimits;
  #pump: Pump | undefined;
  #host = "";
  #connected = true;

  constructor(nc: NatsConnection, o: FleetOptions, settings: StreamSettings, maxMsgSize: number) {
    this.#nc = nc;
    this.#o = o;
    this.#settings = settings;
    this.#limits = this.#messageLimits(maxMsgSize);
    void this.#watchStatus();
  }

  attach(core: FleetCore): void {
    if (this.#pump !== undefined) throw new TypeError("the fleet publisher is attached to a server already");
    this.#host = this.#o.hostToken ?? hostToken(core.hostname);
    const listener = core.registry.create(core.cpus, {
      buffer: this.#o.buffer ?? FLEET_DEFAULTS.buffer,
      policy: "drop-newest",
      ephemeral: false,
      owner: FLEET_OWNER,
    });
    this.#pump = createPump({
      js: jetstream(this.#nc),
      listener,
      stream: this.#settings.name,
      prefix: this.#settings.prefix,
      host: this.#host,
      window: this.#o.window ?? FLEET_DEFAULTS.window,
      lingerMs: this.#o.lingerMs ?? FLEET_DEFAULTS.lingerMs,
      ackTimeoutMs: this.#o.ackTimeoutMs ?? FLEET_DEFAULTS.ackTimeoutMs,
      limits: this.#limits,
      log: this.#o.log ?? (() => {}),
      problemLogMs: this.#o.problemLogMs,
    });
  }

  // The max_payload is the server's connected to now (nats.js updates its INFO on a reconnect, and checks each
  // publish against it); the stream's limit is read again when the pump asks.
  #messageLimits(maxMsgSize: number): MessageLimits {
    const name = this.#settings.name, nc = this.#nc;
    const source = {
      stream: name,
      maxPayload: () => nc.info?.max_payload ?? Infinity,
      readMaxMsgSize: async () => (await (await jetstreamManager(nc)).streams.info(name)).config.max_msg_size ?? 0,
    };
    const log = this.#o.log ?? (() => {});
    return new MessageLimits({ source, maxMsgSize, log, refreshMs: this.#o.limitsRefreshMs });
  }

  state(): FleetState {
    const p = this.#pump?.counters();
    return {
      connected: this.#connected && !this.#nc.isClosed(),
      produced: p?.produced ?? 0,
      published: p?.published ?? 0,
      pending: p?.pending ?? 0,
      queued: p?.queued ?? 0,
      dropped: p?.dropped ?? 0,
      retries: p?.retries ?? 0,
      stream: this.#settings.name,
      subjectPrefix: this.#settings.prefix,
      host: this.#host,
      lastError: p?.lastError ?? "",
      failing: p?.failing ?? "",
      failingSince: p?.failingSince ?? 0,
      failures: p?.failures ?? {},
      unsent: p?.unsent ?? 0,
    };
  }

  async close(): Promise<void> {
    await this.#pump?.drain(this.#o.ackTimeoutMs ?? FLEET_DEFAULTS.ackTimeoutMs);
    await this.#nc.close().catch(() => {});
  }

  async #watchStatus(): Promise<void> {
    const log = this.#o.log ?? (() => {});
    for await (const s of this.#nc.status()) {
      if (s.type === "disconnect") {
        this.#connected = false;
        log(
          "warning",
          `fleet: disconnected from NATS; exits queue (--nats-buffer) and are retried, then dropped with loss markers`,
        );
      } else if (s.type === "reconnect") {
        this.#connected = true;
        log("info", "fleet: reconnected to NATS; publishing what was queued");
        // Perhaps to another server of a cluster, or to one restarted with another configuration.
        void this.#limits.reread();
      } else if (s.type === "error") {
        // The server's -ERR (a permissions violation, a protocol error): nats.js matches it to a request only
        // sometimes, so it is reported here too, or its words might never reach the operator.
        this.#pump?.serverError(s.error);
      }
    }
  }
}
