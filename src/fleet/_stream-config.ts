/**
 * The JetStream stream taskwire publishes into: created when missing, and
 * when present, checked for what publishing relies on (it holds taskwire's
 * subjects, and its retention is the one asked for; JetStream cannot change
 * a stream's retention after it is made). Limits that differ (max age, max
 * bytes) are the existing stream's to keep: they are reported, not changed,
 * since an operator may have set them on purpose.
 */
import { type JetStreamManager, RetentionPolicy, StorageType, type StreamConfig } from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { streamSubjects } from "./subjects.ts";

/** How the stream is retained: by limits (age, bytes), while consumers are interested, or until a consumer acks (work queue). */
export type Retention = "limits" | "interest" | "workqueue";

/** What the stream should be. */
export interface StreamSettings {
  readonly name: string;
  readonly prefix: string;
  readonly retention: Retention;
  /** Oldest message kept, ms (0: no limit). */
  readonly maxAgeMs: number;
  /** Most bytes kept (0: no limit); past it the oldest messages go. */
  readonly maxBytes: number;
  /** How long JetStream remembers message ids to drop a retried publish, ms. */
  readonly duplicateWindowMs: number;
}

/** The existing stream cannot take taskwire's records as they are configured. */
export class StreamConfigError extends Error {
  override readonly name = "StreamConfigError";
}

const RETENTION: Record<Retention, RetentionPolicy> = {
  limits: RetentionPolicy.Limits,
  interest: RetentionPolicy.Interest,
  workqueue: RetentionPolicy.Workqueue,
};

/** The config of a new stream. */
export function streamConfig(s: StreamSettings): Partial<StreamConfig> & { name: string } {
  return {
    name: s.name,
    subjects: [streamSubjects(s.prefix)],
    retention: RETENTION[s.retention],
    storage: StorageType.File,
    max_age: nanos(s.maxAgeMs),
    max_bytes: s.maxBytes === 0 ? -1 : s.maxBytes,
    duplicate_window: nanos(Math.min(s.duplicateWindowMs, s.maxAgeMs === 0 ? Infinity : s.maxAgeMs)),
  };
}

/**
 * The smallest message limit (the server's max_payload, the stream's
 * max_msg_size) the publisher works with: one event, the largest an exit
 * encodes to (two TaskStats of about 1.1 KB at most) with its headers, fits
 * in it with room to spare.
 */
export const MIN_MESSAGE_BYTES = 8192;

/** The stream as found or made: warnings about limits that differ, and its max_msg_size (0: none). */
export interface EnsuredStream {
  readonly warnings: string[];
  readonly maxMsgSize: number;
}

/**
 * Creates the stream, or checks the existing one (StreamConfigError when it
 * cannot be used). Returns warnings about limits that differ.
 */
export async function ensureStream(jsm: JetStreamManager, s: StreamSettings): Promise<EnsuredStream> {
  const existing = await streamInfo(jsm, s.name);
  if (existing === undefined) {
    try {
      await jsm.streams.add(streamConfig(s));
      return { warnings: [], maxMsgSize: 0 };
    } catch (err) {
      // Hosts started together race to create it ("subjects overlap with an existing stream"): whoever lost checks
      // the one that won, as it would have found it a moment later.
      const made = await streamInfo(jsm, s.name);
      if (made === undefined) throw await overlapping(jsm, s, err);
      return ensured(made.config, s);
    }
  }
  return ensured(existing.config, s);
}

function ensured(config: StreamConfig, s: StreamSettings): EnsuredStream {
  const warnings = checkCompatible(config, s);
  return { warnings, maxMsgSize: Math.max(0, config.max_msg_size ?? 0) };
}

// The server refused a new stream whose subjects another stream holds: say which one, and what to pick.
async function overlapping(jsm: JetStreamManager, s: StreamSettings, err: unknown): Promise<unknown> {
  if (!/subjects overlap/i.test(String(err))) return err;
  const subject = `${s.prefix}.host.exits.0`;
  const other = await jsm.streams.find(subject).catch(() => undefined);
  return new StreamConfigError(
    `--nats-stream ${s.name} cannot be made: its subjects ${s.prefix}.*.exits.* overlap ${
      other === undefined ? "another stream's" : `stream ${other}'s`
    } on this NATS server; publish to that stream (--nats-stream ${
      other ?? "NAME"
    }) if it is taskwire's, or pick another --nats-subject-prefix`,
  );
}

async function streamInfo(jsm: JetStreamManager, name: string) {
  return await jsm.streams.info(name).catch((err: unknown) => {
    if ((err as { code?: unknown }).code === 10059 || /stream not found/i.test(String(err))) return undefined;
    throw err;
  });
}

/** Throws StreamConfigError for what makes `config` unusable; returns warnings for limits that differ. */
export function checkCompatible(config: StreamConfig, s: StreamSettings): string[] {
  const wanted = streamSubjects(s.prefix);
  if (!(config.subjects ?? []).some((subject) => covers(subject, wanted))) {
    throw new StreamConfigError(
      `the JetStream stream "${s.name}" exists but holds subjects [${
        (config.subjects ?? []).join(", ")
      }], not ${wanted}; add ${wanted} to it (nats stream edit ${s.name} --subjects ...), or pick another --nats-stream or --nats-subject-prefix`,
    );
  }
  if (config.retention !== RETENTION[s.retention]) {
    throw new StreamConfigError(
      `the JetStream stream "${s.name}" exists with ${config.retention} retention, not ${s.retention} (--nats-retention); JetStream cannot change a stream's retention: pass --nats-retention ${config.retention}, or delete the stream (nats stream rm ${s.name}) to let taskwire make it`,
    );
  }
  // 0 is no limit, as -1 is (JetStream takes either for none; ensured() reads it so too).
  const msgSize = config.max_msg_size ?? -1;
  if (msgSize > 0 && msgSize < MIN_MESSAGE_BYTES) {
    throw new StreamConfigError(
      `the JetStream stream "${s.name}" exists with a max message size of ${msgSize} bytes, less than the ${MIN_MESSAGE_BYTES} one exit's message may need; raise it (nats stream edit ${s.name} --max-msg-size ${MIN_MESSAGE_BYTES} or more; -1: no limit), or pick another --nats-stream`,
    );
  }
  const warnings: string[] = [];
  const age = Math.round(config.max_age / 1e6), bytes = config.max_bytes < 0 ? 0 : config.max_bytes;
  if (age !== s.maxAgeMs) warnings.push(`its max age is ${age} ms (0: none), not ${s.maxAgeMs} (--nats-max-age)`);
  if (bytes !== s.maxBytes) warnings.push(`its max bytes is ${bytes} (0: none), not ${s.maxBytes} (--nats-max-bytes)`);
  if (config.duplicate_window === 0) warnings.push("its duplicate window is 0: a retried publish may be stored twice");
  return warnings.map((w) => `the existing JetStream stream "${s.name}" is kept as it is: ${w}`);
}

/** Whether subject pattern `pattern` matches every subject `wanted` (a pattern itself) matches. */
export function covers(pattern: string, wanted: string): boolean {
  const p = pattern.split("."), w = wanted.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return i < w.length;
    if (i >= w.length) return false;
    if (p[i] !== "*" && p[i] !== w[i]) return false;
    if (p[i] === "*" && w[i] === ">") return false;
  }
  return p.length === w.length;
}
