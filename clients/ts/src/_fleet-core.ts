/**
 * watchFleet's runtime-neutral part: a JetStream consumer over the stream
 * `taskwire serve --nats` publishes to, yielding each message's events
 * (the same ExitEvent as watchExits) with the host they came from. How to
 * connect is the entry's business (fleet.ts: WebSocket; node.ts: TCP).
 *
 * Subjects are `<prefix>.<host>.exits.<cpu>`, and `<prefix>.<host>.exits.lost`
 * for loss markers of the publisher's own queue (they span every CPU). NATS
 * wildcards match whole tokens only, so the consumer's filter subject names
 * a host only when `hosts` is a plain name; a glob ("web-*") filters
 * `<prefix>.*.exits.*` here, by host token, as do `cpus` (loss markers always
 * pass: which CPUs their seqs were on is not known).
 */
import { create } from "@bufbuild/protobuf";
import {
  type ExitEvent,
  ExitEventSchema,
  type ExitFilter,
  LossReason,
  SubscribeExitsResponseSchema,
} from "./gen/taskwire/v1/taskstats_pb.ts";
import { decodeFast } from "./_fast-decode.ts";
import { FleetOrder, type Ready } from "./_fleet-order.ts";
import type { ConnectionOptions, NatsConnection } from "@nats-io/nats-core";
import {
  AckPolicy,
  type Consumer,
  type ConsumerMessages,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type JsMsg,
} from "@nats-io/jetstream";

/** An exit event from a fleet: the event, and the host (its subject token) it came from. */
export type FleetExitEvent = ExitEvent & { readonly host: string };

/** Options of watchFleet: a connection, or servers to connect to (with `auth`/`tls`). */
export interface WatchFleetOptions {
  /** A connection the caller made (and closes); else `servers` is connected to, and closed when the iteration ends. */
  readonly connection?: NatsConnection | undefined;
  /** NATS server URLs (Node: nats://host:4222; elsewhere: ws:// or wss:// URLs of a NATS websocket listener). */
  readonly servers?: string | readonly string[] | undefined;
  /** Connection options for `servers` (authenticator: credsAuthenticator, nkeyAuthenticator, tokenAuthenticator; tls). */
  readonly connectOptions?: Omit<ConnectionOptions, "servers"> | undefined;
  /** The stream (default "TASKWIRE_EXITS", the server's --nats-stream default). */
  readonly stream?: string | undefined;
  /** The subject prefix (default "taskwire"). */
  readonly subjectPrefix?: string | undefined;
  /** Hosts by subject token: a name, or a glob with * and ? ("web-*"); default every host. */
  readonly hosts?: string | undefined;
  /** Only exits on these CPUs (loss markers always come). */
  readonly cpus?: readonly number[] | undefined;
  /** Only exits matching this (as the server's ExitFilter: tgids, uids, comm prefix, nonzero exit); loss markers always come. */
  readonly filter?: Partial<Pick<ExitFilter, "tgids" | "uids" | "commPrefix" | "nonzeroExit">> | undefined;
  /**
   * A durable consumer's name: made if missing, and resumed where it left
   * off (each message is acked once the loop body that got its events
   * returns). Unset: an ordered consumer that lives as long as the iteration.
   */
  readonly durable?: string | undefined;
  /** Where a new consumer starts: every stored message ("all"), or only new ones ("new", the default without `durable`). */
  readonly deliver?: "all" | "new" | undefined;
  /** A durable consumer's ack wait, ms (default 30000): messages delivered and not acked come again after it. */
  readonly ackWaitMs?: number | undefined;
  /**
   * How long a gap in a host's seqs is waited on before it is reported as a
   * RETENTION loss, ms (default ackWaitMs + 5000: JetStream delivers a lost
   * delivery again after the ack wait); and most events held meanwhile
   * (default 65536). A gap that does not fill is messages the stream's
   * limits discarded before this consumer read them.
   */
  readonly reorder?: { readonly waitMs?: number; readonly maxHeld?: number } | undefined;
  /** Ends the iteration when aborted. */
  readonly signal?: AbortSignal | undefined;
}

/** How an entry connects to `servers`. */
export type FleetConnect = (options: ConnectionOptions) => Promise<NatsConnection>;

const GLOB = /[*?]/;
const TOKEN = /^[A-Za-z0-9_-]+$/;

/** watchFleet over `connect`. */
export function createWatchFleet(connect: FleetConnect) {
  return async function* watchFleet(options: WatchFleetOptions): AsyncGenerator<FleetExitEvent, void, undefined> {
    const plan = _plan(options);
    const own = options.connection === undefined;
    const nc = options.connection ?? await connect({ ...options.connectOptions, servers: _servers(options.servers) });
    let messages: ConsumerMessages | undefined;
    const stop = () => void messages?.close();
    options.signal?.addEventListener("abort", stop, { once: true });
    try {
      if (options.signal?.aborted) return;
      messages = await (await _consumer(nc, options, plan.subject)).consume({ max_messages: 256 });
      const order = new FleetOrder<Pending>({
        waitMs: options.reorder?.waitMs ?? (options.ackWaitMs ?? 30_000) + 5000,
        maxHeld: options.reorder?.maxHeld ?? 65_536,
      });
      for await (const m of messages) {
        for (const r of _arrive(m, plan, order)) {
          if ("gap" in r) yield _gapLoss(r.gap, r.host);
          else {
            if (r.item.keep) yield r.item.event;
            if (r.item.ack) r.item.msg.ack();
          }
        }
        if (options.signal?.aborted) break;
      }
    } finally {
      options.signal?.removeEventListener("abort", stop);
      await messages?.close();
      if (own) await nc.close();
    }
  };
}

interface Plan {
  readonly subject: string;
  readonly prefixTokens: number;
  readonly host: ((token: string) => boolean) | undefined;
  readonly keep: ((ev: ExitEvent) => boolean) | undefined;
}

/** The filter subject and the checks made here; TypeError/RangeError for bad options. */
export function _plan(o: WatchFleetOptions): Plan {
  const prefix = o.subjectPrefix ?? "taskwire";
  if (prefix.split(".").some((t) => !TOKEN.test(t))) {
    throw new RangeError(`watchFleet: subjectPrefix "${prefix}" must be dot-separated tokens of A-Z a-z 0-9 _ -`);
  }
  const hosts = o.hosts ?? "*";
  if (!/^[A-Za-z0-9_*?-]+$/.test(hosts)) {
    throw new RangeError(`watchFleet: hosts "${hosts}" must be a host token or a glob of A-Z a-z 0-9 _ - * ?`);
  }
  const literal = !GLOB.test(hosts);
  return {
    subject: `${prefix}.${literal ? hosts : "*"}.exits.*`,
    prefixTokens: prefix.split(".").length,
    host: literal || hosts === "*" ? undefined : _glob(hosts),
    keep: _keep(o),
  };
}

function _servers(servers: string | readonly string[] | undefined): string[] {
  const list = typeof servers === "string"
    ? servers.split(",").map((s) => s.trim()).filter(Boolean)
    : [...servers ?? []];
  if (list.length === 0) throw new TypeError("watchFleet: pass `connection` (a NatsConnection) or `servers`");
  return list;
}

function _glob(glob: string): (token: string) => boolean {
  const re = new RegExp(`^${glob.replace(/[*?]/g, (c) => (c === "*" ? "[^.]*" : "[^.]"))}$`);
  return (token) => re.test(token);
}

// Exit events matching cpus and filter; loss markers always.
function _keep(o: WatchFleetOptions): ((ev: ExitEvent) => boolean) | undefined {
  const cpus = o.cpus === undefined ? undefined : new Set(o.cpus);
  const f = o.filter;
  if (cpus === undefined && f === undefined) return undefined;
  const tgids = f?.tgids?.length ? new Set(f.tgids) : undefined;
  const uids = f?.uids?.length ? new Set(f.uids) : undefined;
  return (ev) => {
    if (ev.event.case !== "exit") return true;
    const s = ev.event.value.pidStats;
    if (cpus !== undefined && !cpus.has(ev.cpu)) return false;
    if (tgids !== undefined && !tgids.has(ev.event.value.tgid)) return false;
    if (uids !== undefined && !uids.has(s?.acUid ?? -1)) return false;
    if (f?.commPrefix && !(s?.acComm ?? "").startsWith(f.commPrefix)) return false;
    return !(f?.nonzeroExit && (s?.acExitcode ?? 0) === 0);
  };
}

/** An event waiting its turn: whether it passes the filters, and the message to ack once it is yielded. */
interface Pending {
  readonly event: FleetExitEvent;
  readonly keep: boolean;
  readonly msg: JsMsg;
  /** The message's last event: ack it after this one. */
  readonly ack: boolean;
}

type Arrived = { readonly item: Pending } | { readonly gap: readonly [number, number]; readonly host: string };

// A message's events through the order keeper: what can be yielded now. A message of a host not asked for, or one
// delivered again, is acked at once.
function _arrive(m: JsMsg, plan: Plan, order: FleetOrder<Pending>): Arrived[] {
  const host = m.subject.split(".")[plan.prefixTokens] ?? "";
  if (plan.host !== undefined && !plan.host(host)) return (m.ack(), []);
  // Nats-Msg-Id is "<host>:<run>:<seq or first-last>" (the publisher's); seqs start again with each run.
  const run = `${host}:${m.headers?.get("Nats-Msg-Id").split(":")[1] ?? ""}`;
  const events = decodeFast(SubscribeExitsResponseSchema, m.data).events;
  const out: Arrived[] = [];
  let again = events.length === 0;
  for (const [i, ev] of events.entries()) {
    const [first, last] = ev.event.case === "lost"
      ? [Number(ev.event.value.firstSeq), Number(ev.event.value.lastSeq)]
      : [Number(ev.seq), Number(ev.seq)];
    const item = {
      event: Object.assign(ev, { host }),
      keep: plan.keep?.(ev) ?? true,
      msg: m,
      ack: i === events.length - 1,
    };
    const ready: Ready<Pending>[] | null = order.push(run, { first, last, item });
    if (ready === null) again = true;
    for (const r of ready ?? []) out.push("gap" in r ? { gap: r.gap, host } : r);
  }
  if (again) m.ack();
  return out;
}

// The seqs of a gap that never filled, as a loss marker (RETENTION: the stream no longer had them).
function _gapLoss([first, last]: readonly [number, number], host: string): FleetExitEvent {
  const ev = create(ExitEventSchema, {
    seq: BigInt(last),
    event: {
      case: "lost",
      value: {
        count: BigInt(last - first + 1),
        firstSeq: BigInt(first),
        lastSeq: BigInt(last),
        reason: LossReason.RETENTION,
      },
    },
  });
  return Object.assign(ev, { host });
}

async function _consumer(nc: NatsConnection, o: WatchFleetOptions, subject: string): Promise<Consumer> {
  const js = jetstream(nc);
  const stream = o.stream ?? "TASKWIRE_EXITS";
  const deliver = (o.deliver ?? (o.durable === undefined ? "new" : "all")) === "all"
    ? DeliverPolicy.All
    : DeliverPolicy.New;
  if (o.durable === undefined) {
    return await js.consumers.get(stream, { filter_subjects: subject, deliver_policy: deliver }).catch(missing(stream));
  }
  const jsm = await jetstreamManager(nc);
  await jsm.streams.info(stream).catch(missing(stream));
  const existing = await jsm.consumers.info(stream, o.durable).catch(() => undefined);
  if (existing === undefined) {
    await jsm.consumers.add(stream, {
      durable_name: o.durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: deliver,
      filter_subject: subject,
      ack_wait: (o.ackWaitMs ?? 30_000) * 1e6,
    });
  } else if ((existing.config.filter_subject ?? "") !== subject) {
    throw new RangeError(
      `watchFleet: the durable consumer "${o.durable}" filters ${
        existing.config.filter_subject ?? "(all)"
      }, not ${subject}; use another durable name or delete it`,
    );
  }
  return await js.consumers.get(stream, o.durable);
}

// A missing stream is most likely no publisher yet, or another --nats-stream: say so.
function missing(stream: string): (err: unknown) => never {
  return (err) => {
    if ((err as { code?: unknown }).code !== 10059) throw err;
    throw new RangeError(
      `watchFleet: NATS has no JetStream stream "${stream}": start a taskwire serve --nats first, or pass the stream its --nats-stream names`,
      { cause: err },
    );
  };
}
