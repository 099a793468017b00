/**
 * The largest message the publisher may send: the smaller of the NATS
 * server's max_payload and the stream's max_msg_size. nats.js keeps the INFO
 * of the server it is connected to now, so a reconnect to a server with a
 * smaller max_payload shows at once; the stream's limit is read at start and
 * again when NATS refuses a message for its size (an operator may lower it
 * while taskwire runs: messages cut to the old one would be refused for
 * ever, and the pump retries them before anything newer). Re-reads are at
 * most one per REREAD_MS, whatever the server answers or how often it
 * refuses: a hostile or flapping server cannot make the publisher spin on
 * them, nor every host of a fleet flood its JetStream API.
 */
import { MIN_MESSAGE_BYTES } from "./_stream-config.ts";

/** The shortest time between two reads of the stream's max_msg_size, ms. */
export const REREAD_MS = 1000;

/**
 * While the limits cut messages, they are read again this often, ms: nothing else says one was raised (a message
 * that fits is never refused), and messages would stay cut to the old limit until taskwire restarts.
 */
export const REFRESH_MS = 60_000;

/** Where the limits come from. */
export interface LimitsSource {
  /** The stream's name, for messages. */
  readonly stream: string;
  /** The max_payload of the server connected to now (Infinity when unknown). */
  maxPayload(): number;
  /** Reads the stream's max_msg_size from JetStream (0 or less: none). */
  readMaxMsgSize(): Promise<number>;
}

/** The limits as the pump sees them. */
export interface PumpLimits {
  /** The largest message (payload and headers) NATS and the stream take now, bytes (Infinity: no limit). */
  bytes(): number;
  /**
   * Reads the limits again unless they were read within REREAD_MS; resolves once read (or skipped). Asked while a
   * read is under way, resolves with that read. `wait`: read once REREAD_MS allows rather than skip (a message NATS
   * refused for its size is cut again to limits read after the refusal, not to ones read just before it).
   */
  reread(o?: { readonly wait?: boolean }): Promise<void>;
  /** Reads the limits again when they were read more than the refresh interval ago (REFRESH_MS): they cut a message. */
  refresh(): void;
  /** Which setting `bytes()` comes from and how to raise it, for messages. */
  raise(): string;
}

/** What MessageLimits is made with. */
export interface MessageLimitsOptions {
  readonly source: LimitsSource;
  /** The stream's max_msg_size as read at start, just before (0 or less: none). */
  readonly maxMsgSize: number;
  readonly log: (level: "info" | "warning", text: string) => void;
  /** The clock re-reads are spaced by, ms (default Date.now). */
  readonly now?: (() => number) | undefined;
  /** How old the limits may be when they cut a message, ms (default REFRESH_MS). */
  readonly refreshMs?: number | undefined;
}

/** The limits of one publisher. */
export class MessageLimits implements PumpLimits {
  readonly #source: LimitsSource;
  readonly #log: (level: "info" | "warning", text: string) => void;
  readonly #now: () => number;
  readonly #refreshMs: number;
  #maxMsgSize: number;
  #readAt: number;
  /** The read under way: a reread asked for meanwhile resolves with it, once it is read. */
  #reading: Promise<void> | undefined;

  constructor(o: MessageLimitsOptions) {
    this.#source = o.source;
    this.#maxMsgSize = o.maxMsgSize;
    this.#log = o.log;
    this.#now = o.now ?? Date.now;
    this.#refreshMs = Math.max(REREAD_MS, o.refreshMs ?? REFRESH_MS);
    this.#readAt = this.#now(); // read at start, just before
  }

  bytes(): number {
    return Math.min(this.#source.maxPayload(), this.#streamBytes());
  }

  reread(o: { readonly wait?: boolean } = {}): Promise<void> {
    if (this.#reading !== undefined) return this.#reading;
    const now = this.#now();
    const early = REREAD_MS - (now - this.#readAt);
    if (early > 0 && o.wait !== true) return Promise.resolve();
    this.#readAt = now + Math.max(0, early);
    this.#reading = sleep(early).then(() => this.#read()).finally(() => (this.#reading = undefined));
    return this.#reading;
  }

  refresh(): void {
    if (this.#now() - this.#readAt >= this.#refreshMs) void this.reread();
  }

  raise(): string {
    const stream = this.#source.stream;
    return this.#source.maxPayload() <= this.#streamBytes()
      ? `the NATS server's max_payload (${this.#source.maxPayload()} bytes): raise it in its configuration`
      : `stream ${stream}'s max_msg_size (${this.#maxMsgSize} bytes): raise it (nats stream edit ${stream} --max-msg-size ${MIN_MESSAGE_BYTES} or more; -1: no limit)`;
  }

  async #read(): Promise<void> {
    try {
      this.#update(Math.max(0, await this.#source.readMaxMsgSize()));
    } catch {
      // The stream is gone or JetStream does not answer: publishes fail for that reason too, and say so
      // (_publish-failure.ts); the limit known is kept until a read succeeds.
    }
  }

  #streamBytes(): number {
    return this.#maxMsgSize > 0 ? this.#maxMsgSize : Infinity;
  }

  // An operator changed it: said once per change, as messages are cut to it from now on.
  #update(maxMsgSize: number): void {
    if (maxMsgSize === this.#maxMsgSize) return;
    const shown = (n: number) => (n > 0 ? `${n} bytes` : "no limit");
    this.#log(
      "info",
      `fleet: stream ${this.#source.stream}'s max_msg_size is now ${shown(maxMsgSize)} (was ${
        shown(this.#maxMsgSize)
      }); messages are cut to it`,
    );
    this.#maxMsgSize = maxMsgSize;
  }
}

function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}
