/**
 * Property-based fuzzing (fast-check): arbitrary input yields a result or a
 * typed error, never a crash, a hang or an untyped exception.
 *
 * - the cpulist parser: any text is a CPU list or a CpulistError, with a
 *   bounded message; and on the real kernel (when this machine has the
 *   TASKSTATS family and CAP_NET_ADMIN) parseCpumask accepts exactly the
 *   cpumasks TASKSTATS_CMD_ATTR_REGISTER_CPUMASK accepts, refusing the others
 *   with the kernel's errno, and masks with newlines and wrapping groups name
 *   the CPUs whose exits the kernel delivers;
 * - the netlink codec and struct decoder: arbitrary bytes, and truncations
 *   and mutations of messages captured from kernel 6.18, parse or throw
 *   NetlinkFormatError (or decodeTaskStats's documented RangeError); a
 *   message parsed inside a larger buffer reads nothing outside its view;
 * - the request paths of a real server on loopback: arbitrary bodies and
 *   headers on Connect (JSON and protobuf, unary and streaming envelopes),
 *   gRPC-Web and gRPC over h2c are answered with a success or a well-formed
 *   error carrying an ErrorDetail, never INTERNAL or UNKNOWN; /healthz still
 *   answers after each batch;
 * - the plaintext port's protocol sniffer: arbitrary bytes split into
 *   arbitrary TCP writes (partial HTTP/2 prefaces among them) leave the
 *   server answering HTTP/1.1 and h2c.
 *
 * Runs are bounded (numRuns below) so the file runs in well under a minute.
 */
import { readFileSync } from "node:fs";
import { Agent, request as h1request } from "node:http";
import { type ClientHttp2Session, connect as h2connect, type IncomingHttpHeaders } from "node:http2";
import { connect as tcpConnect } from "node:net";
import { gunzipSync } from "node:zlib";
import { create, type DescMessage, type DescMethod, fromBinary, fromJsonString, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { compressionGzip } from "@connectrpc/connect-node";
import { errorFromJson, errorFromJsonBytes } from "@connectrpc/connect/protocol-connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { trailerParse } from "@connectrpc/connect/protocol-grpc-web";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorDetailSchema, TaskStats } from "../src/gen/taskwire/v1/taskstats_pb.ts";
import { CpulistError, createPossibleCpus, parseCpulist, parseCpumask } from "../src/kernel/cpulist.ts";
import { decodeStatsVector, decodeTaskStats } from "../src/kernel/taskstats-decode.ts";
import {
  encodeTaskstatsGet,
  NetlinkFormatError,
  parseErrorPayload,
  parseFamilyId,
  parseMessages,
  parseTaskstatsNew,
} from "../src/sources/netlink/codec.ts";
import * as K from "../src/sources/netlink/constants.ts";
import { createSimSource, type SimSource } from "../src/sources/sim/sim-source.ts";
import { type Running, startServer } from "./helpers.ts";
import { netlinkMissing } from "./native.ts";

/** More runs for a deeper search (e.g. TASKWIRE_FUZZ_SCALE=20); the default keeps the file well under a minute. */
const SCALE = Math.max(1, Number(process.env["TASKWIRE_FUZZ_SCALE"] ?? 1) || 1);

/** Runs a property and records how many runs it made and how long they took (printed at the end). */
const runs: { name: string; numRuns: number; ms: number }[] = [];
async function check<Ts>(name: string, property: fc.IRawProperty<Ts>, base: number): Promise<void> {
  const numRuns = base * SCALE;
  const t0 = performance.now();
  await fc.assert(property, { numRuns });
  runs.push({ name, numRuns, ms: Math.round(performance.now() - t0) });
}
afterAll(() => {
  console.log(runs.map((r) => `${r.name}: ${r.numRuns} runs in ${r.ms} ms`).join("\n"));
});

// ---------------------------------------------------------------------------------------------------------------
// The cpulist parser

/** Text a cpulist parser should be tried on: its own alphabet, whitespace of every kind, big numbers, any Unicode. */
const cpulistText: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ maxLength: 20, unit: "grapheme" }),
  fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b).toString("latin1")), // byte-ish
  fc.array(
    fc.oneof(
      fc.constantFrom(
        ..."0123456789-,:/N \n\t\v\f\r\0".split(""),
        "all",
        "ALL",
        "aLl",
        "\u00a0",
        "\u2003",
        "\u3000",
        "\u0085",
        "x",
      ),
      fc.nat().map(String),
      fc.constantFrom("4294967295", "4294967296", "99999999999", "18446744073709551616", "0000000001"),
    ),
    { maxLength: 16 },
  ).map((parts) => parts.join("")),
);

describe("fuzz: the cpulist parser", () => {
  it("parseCpulist: sorted distinct CPUs below nbits, or a CpulistError with a short message", async () => {
    await check(
      "parseCpulist",
      fc.property(cpulistText, fc.constantFrom(1, 2, 8, 64, 4096), (text, nbits) => {
        try {
          const cpus = parseCpulist(text, nbits);
          expect(cpus.every((c, i) => Number.isInteger(c) && c >= 0 && c < nbits && (i === 0 || c > cpus[i - 1]!)))
            .toBe(true);
        } catch (err) {
          expect(err).toBeInstanceOf(CpulistError);
          expect(["EINVAL", "ERANGE", "EOVERFLOW"]).toContain((err as CpulistError).errno);
          expect((err as CpulistError).message.length).toBeLessThan(800); // 64 + 12 characters echoed, JSON-escaped (at most 6 each)
        }
      }),
      5000,
    );
  });

  it("parseCpumask: a non-empty subset of the possible CPUs, or a CpulistError with a short message", async () => {
    const sets = [createPossibleCpus("0-7"), createPossibleCpus([0, 2, 4, 6]), createPossibleCpus("0")];
    const long = fc.tuple(cpulistText, fc.nat({ max: 3000 })).map(([t, n]) => t.repeat(Math.min(n, 3000)));
    await check(
      "parseCpumask",
      fc.property(fc.oneof(cpulistText, long), fc.constantFrom(...sets), (text, possible) => {
        try {
          const cpus = parseCpumask(text, possible);
          expect(cpus.length).toBeGreaterThan(0);
          expect(cpus.every((c) => possible.has(c))).toBe(true);
        } catch (err) {
          expect(err).toBeInstanceOf(CpulistError);
          expect((err as CpulistError).message.length).toBeLessThan(800); // 64 + 12 characters echoed, JSON-escaped (at most 6 each)
        }
      }),
      3000,
    );
  });
});

const missing = await netlinkMissing();

describe.skipIf(missing !== undefined)(
  missing === undefined
    ? "fuzz: cpumasks against the real kernel"
    : `fuzz: cpumasks against the real kernel SKIPPED: ${missing}`,
  () => {
    it("parseCpumask refuses exactly what TASKSTATS_CMD_ATTR_REGISTER_CPUMASK refuses, with the kernel's errno", async () => {
      const { loadSyscalls } = await import("../src/sys/load.ts");
      const { openGenlSocket, resolveFamily, NetlinkRequestError } = await import(
        "../src/sources/netlink/genl-socket.ts"
      );
      const sys = await loadSyscalls();
      const sock = openGenlSocket(sys);
      const possible = createPossibleCpus(readFileSync("/sys/devices/system/cpu/possible", "utf8").trim());
      const errnos: Record<number, string> = { [K.EINVAL]: "EINVAL", 34: "ERANGE", 75: "EOVERFLOW", 7: "E2BIG" };
      let seq = 100;
      try {
        const family = resolveFamily(sock, "TASKSTATS", ++seq);
        // The kernel's verdict. A registration it accepts is taken back at once (its listener on this socket,
        // which nothing reads, would only collect exits).
        const kernel = (text: string): string => {
          const s = ++seq;
          try {
            sock.transact(
              encodeTaskstatsGet(family, s, { type: K.TASKSTATS_CMD_ATTR_REGISTER_CPUMASK, string: text }),
              s,
              "register",
            );
          } catch (err) {
            if (err instanceof NetlinkRequestError) return errnos[err.errno] ?? `errno ${err.errno}`;
            throw err;
          }
          const d = ++seq;
          sock.transact(
            encodeTaskstatsGet(family, d, { type: K.TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK, string: possible.list }),
            d,
            "deregister",
          );
          return "ok";
        };
        // taskwire's: parseCpumask, except that the kernel accepts an empty mask (registering nothing) where taskwire
        // refuses it (a listener on no CPUs).
        const ours = (text: string): string => {
          try {
            parseCpumask(text, possible);
            return "ok";
          } catch (err) {
            const empty = (() => {
              try {
                return parseCpulist(text, possible.nbits).length === 0;
              } catch {
                return false;
              }
            })();
            return empty ? "ok" : (err as CpulistError).errno;
          }
        };
        // Short enough for both length limits (taskwire's 100 + 6 x possible CPUs is the stricter).
        const fits = cpulistText.filter((t) => new TextEncoder().encode(t).length + 1 <= 100);
        // Which CPUs a mask names, as the kernel shows it: an exit pinned to each CPU reaches this socket or not.
        if (possible.cpus.length >= 2) {
          const { runHelper } = await import("./native.ts");
          const buf = new Uint8Array(1 << 16);
          const delivered = async (text: string): Promise<number[]> => {
            const listener = openGenlSocket(sys);
            try {
              const s = ++seq;
              listener.transact(
                encodeTaskstatsGet(family, s, { type: K.TASKSTATS_CMD_ATTR_REGISTER_CPUMASK, string: text }),
                s,
                "register",
              );
              const pids = new Map<number, number>();
              for (const cpu of [0, 1]) pids.set((await runHelper(["exit", "tw-mask", "0"], cpu)).pid, cpu);
              // The exit records are sent before the helpers' parent sees them end; a CPU not named sends none.
              await new Promise((r) => setTimeout(r, 50));
              const got = new Set<number>();
              for (
                let n = sys.recv(listener.fd, buf, K.MSG_DONTWAIT);
                n > 0 || n === -K.ENOBUFS;
                // ENOBUFS: other exits overflowed the socket; what is queued still comes
                n = sys.recv(listener.fd, buf, K.MSG_DONTWAIT)
              ) {
                if (n < 0) continue;
                for (const m of parseMessages(buf.subarray(0, n))) {
                  const cpu = m.type === family ? pids.get(parseTaskstatsNew(m.payload).pid?.id ?? -1) : undefined;
                  if (cpu !== undefined) got.add(cpu);
                }
              }
              const d = ++seq;
              const all = { type: K.TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK, string: possible.list };
              listener.transact(encodeTaskstatsGet(family, d, all), d, "deregister");
              return [...got].sort();
            } finally {
              listener.close();
            }
          };
          for (
            const text of [
              "1\n0",
              "0\n1",
              "1,\n0",
              "0-1:1/2\n1",
              "1-1:1/4294967295",
              "1-1:4294967295/4294967295",
              "N\n0",
              "1\u00000",
            ]
          ) {
            expect({ text, cpus: await delivered(text) }).toEqual({
              text,
              cpus: parseCpulist(text, possible.nbits).filter((c) => c < 2),
            });
          }
        }
        await check(
          "cpumask vs kernel",
          fc.property(fits, (text) => {
            expect({ text, verdict: ours(text) }).toEqual({ text, verdict: kernel(text) });
          }),
          1500,
        );
      } finally {
        sock.close();
      }
    });
  },
);

// ---------------------------------------------------------------------------------------------------------------
// The netlink codec

const fx = JSON.parse(readFileSync(new URL("./fixtures/kernel-6.18-messages.json", import.meta.url), "utf8")) as {
  getPidReply: string;
  getPidEsrch: string;
  getFamilyReply: string;
  exits: string[];
};
const captured = [fx.getPidReply, fx.getPidEsrch, fx.getFamilyReply, ...fx.exits].map((h) =>
  new Uint8Array(Buffer.from(h, "hex"))
);

/**
 * Everything the source does with a datagram: split it, and read each message as its type says. Returns a
 * JSON-able summary; throws what the codec throws.
 */
function parseAll(buf: Uint8Array): unknown[] {
  return parseMessages(buf).map((m) => {
    const head = { type: m.type, flags: m.flags, seq: m.seq, port: m.portId, length: m.payload.byteLength };
    if (m.type === K.NLMSG_ERROR) return { ...head, errno: parseErrorPayload(m.payload) };
    if (m.type === K.GENL_ID_CTRL) return { ...head, family: parseFamilyId(m.payload) };
    const t = parseTaskstatsNew(m.payload);
    const decode = (a: { id: number; stats: Uint8Array } | undefined) =>
      a && { id: a.id, stats: decodeTaskStats(a.stats), vector: decodeStatsVector(a.stats) };
    return { ...head, pid: decode(t.pid), tgid: decode(t.tgid) };
  });
}

const json = (v: unknown) =>
  JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `${x}n` : x instanceof Float64Array ? [...x] : x));

/** The result of parsing `bytes`, or the typed error's name; anything else fails the test. */
function outcome(bytes: Uint8Array): string {
  try {
    return json(parseAll(bytes));
  } catch (err) {
    if (err instanceof NetlinkFormatError) return `NetlinkFormatError: ${err.message}`;
    // decodeTaskStats/decodeStatsVector's one documented refusal: a struct too short for its version field.
    if (err instanceof RangeError && /has no version field/.test(err.message)) return `RangeError: ${err.message}`;
    throw err;
  }
}

/**
 * The same bytes parsed from a tight copy and from inside a larger buffer with random bytes around them: the
 * codec works on views (subarray), so a read past a view's end would see the surrounding bytes and differ.
 */
function checkContained(bytes: Uint8Array, before: Uint8Array, after: Uint8Array): void {
  const wide = new Uint8Array(before.byteLength + bytes.byteLength + after.byteLength);
  wide.set(before);
  wide.set(bytes, before.byteLength);
  wide.set(after, before.byteLength + bytes.byteLength);
  const inside = wide.subarray(before.byteLength, before.byteLength + bytes.byteLength);
  expect(outcome(inside)).toBe(outcome(bytes.slice()));
}

const padding = fc.uint8Array({ minLength: 1, maxLength: 64 });

/** Mutations of a captured message: truncation, overwritten bytes, lengths set to anything, bytes cut out or added. */
const mutated: fc.Arbitrary<Uint8Array> = fc
  .tuple(
    fc.constantFrom(...captured),
    fc.array(
      fc.oneof(
        fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
        fc.record({ kind: fc.constant("byte" as const), at: fc.nat(), value: fc.nat(255) }),
        fc.record({ kind: fc.constant("u16" as const), at: fc.nat(), value: fc.nat(0xffff) }),
        fc.record({ kind: fc.constant("u32" as const), at: fc.nat(), value: fc.nat() }),
        fc.record({ kind: fc.constant("cut" as const), at: fc.nat(), n: fc.integer({ min: 1, max: 16 }) }),
        fc.record({
          kind: fc.constant("insert" as const),
          at: fc.nat(),
          bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
        }),
      ),
      { minLength: 1, maxLength: 4 },
    ),
  )
  .map(([original, edits]) => {
    let b = original.slice();
    for (const e of edits) {
      const at = b.byteLength === 0 ? 0 : e.at % b.byteLength;
      if (e.kind === "truncate") b = b.slice(0, at);
      else if (e.kind === "byte" && b.byteLength > 0) b[at] = e.value;
      else if (e.kind === "u16" && at + 2 <= b.byteLength) new DataView(b.buffer).setUint16(at & ~1, e.value, true);
      else if (e.kind === "u32" && at + 4 <= b.byteLength) new DataView(b.buffer).setUint32(at & ~3, e.value, true);
      else if (e.kind === "cut") b = new Uint8Array([...b.subarray(0, at), ...b.subarray(at + e.n)]);
      else if (e.kind === "insert") b = new Uint8Array([...b.subarray(0, at), ...e.bytes, ...b.subarray(at)]);
    }
    return b;
  });

/** Well-framed messages with arbitrary attributes: the AGGR nests and struct sizes the decoder branches on. */
const framed: fc.Arbitrary<Uint8Array> = fc
  .array(
    fc.record({
      type: fc.constantFrom(31, K.NLMSG_ERROR, K.GENL_ID_CTRL, 3),
      attrs: fc.array(
        fc.record({
          type: fc.constantFrom(
            K.TASKSTATS_TYPE_AGGR_PID,
            K.TASKSTATS_TYPE_AGGR_TGID,
            K.TASKSTATS_TYPE_NULL,
            1,
            2,
            3,
            7,
            0x8004,
          ),
          inner: fc.array(
            fc.record({
              type: fc.constantFrom(
                K.TASKSTATS_TYPE_PID,
                K.TASKSTATS_TYPE_TGID,
                K.TASKSTATS_TYPE_STATS,
                K.TASKSTATS_TYPE_NULL,
                9,
              ),
              data: fc.oneof(
                fc.uint8Array({ maxLength: 8 }),
                fc.integer({ min: 0, max: 600 }).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
              ),
            }),
            { maxLength: 4 },
          ),
        }),
        { maxLength: 3 },
      ),
    }),
    { minLength: 1, maxLength: 3 },
  )
  .map((messages) => {
    const attr = (type: number, data: Uint8Array) => {
      const out = new Uint8Array((4 + data.byteLength + 3) & ~3);
      new DataView(out.buffer).setUint16(0, 4 + data.byteLength, true);
      new DataView(out.buffer).setUint16(2, type, true);
      out.set(data, 4);
      return out;
    };
    const concat = (parts: Uint8Array[]) => new Uint8Array(parts.flatMap((p) => [...p]));
    return concat(messages.map((m) => {
      const payload = concat([
        new Uint8Array(4),
        ...m.attrs.map((a) => attr(a.type, concat(a.inner.map((i) => attr(i.type, i.data))))),
      ]);
      const head = new Uint8Array(16);
      new DataView(head.buffer).setUint32(0, 16 + payload.byteLength, true);
      new DataView(head.buffer).setUint16(4, m.type, true);
      return concat([head, payload]);
    }));
  });

describe("fuzz: the netlink codec and struct decoder", () => {
  it("arbitrary bytes: parsed or NetlinkFormatError, never a read outside the message", async () => {
    await check(
      "codec: arbitrary bytes",
      fc.property(fc.uint8Array({ maxLength: 700 }), padding, padding, checkContained),
      3000,
    );
  });

  it("captured kernel messages, truncated and mutated: the same", async () => {
    await check("codec: mutated captures", fc.property(mutated, padding, padding, checkContained), 3000);
    // Every truncation of every capture, exhaustively.
    for (const m of captured) {
      for (let cut = 0; cut <= m.byteLength; cut++) {
        checkContained(m.subarray(0, cut), new Uint8Array([0xaa]), new Uint8Array([0x55]));
      }
    }
  });

  it("well-framed messages with arbitrary attributes and struct sizes: the same", async () => {
    await check("codec: framed", fc.property(framed, padding, padding, checkContained), 2000);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The request paths

let running: Running;
let source: SimSource;
beforeAll(async () => {
  source = createSimSource({ cpus: 4, exitRate: 0, seed: 17 }) as SimSource;
  // gzip offered, so compressed requests reach the decompressor too.
  running = await startServer(source, {}, { compression: [compressionGzip] });
});
afterAll(() => running?.close());

const methods = TaskStats.methods;
type Protocol = "connect-unary" | "connect-stream" | "grpc-web" | "grpc";

/** A request message of `desc` with arbitrary field values, as protobuf or JSON, possibly mangled. */
function messageOf(desc: DescMessage): fc.Arbitrary<{ binary: Uint8Array; json: string }> {
  const text = fc.oneof(
    cpulistText,
    fc.string({ maxLength: 40 }),
    fc.constantFrom("", "0", "0-3", "all", "x".repeat(3000)),
  );
  const value = fc.record({
    pid: fc.oneof(fc.nat(5), fc.nat()),
    tgid: fc.oneof(fc.nat(5), fc.nat()),
    cpumask: text,
    listenerId: text,
    buffer: fc.nat(),
    overflow: fc.nat(5),
    afterSeq: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    heartbeatMs: fc.oneof(fc.constant(0), fc.nat()),
    maxBatch: fc.nat(),
    fields: fc.array(fc.oneof(fc.constantFrom("ac_comm", "ac_pid"), fc.string({ maxLength: 20 })), { maxLength: 3 }),
    listeners: fc.boolean(),
  });
  // Some valid requests too, so that successes (a stream that opens, a listener registered) are among the answers.
  const valid = fc.constantFrom<Record<string, unknown>>(
    { cpumask: "0-3" },
    { cpumask: "0", heartbeatMs: 100, fields: ["ac_comm"] },
    { pid: 1, tgid: 1, listeners: true },
  );
  return fc.oneof(value, valid).map((v) => {
    const init = Object.fromEntries(Object.entries(v).filter(([k]) => desc.fields.some((f) => f.localName === k)));
    const msg = create(desc, init);
    return {
      binary: toBinary(desc, msg),
      json: JSON.stringify(init, (_k, x) => (typeof x === "bigint" ? String(x) : x)),
    };
  });
}

const jsonish = fc.oneof(
  fc.json({ maxDepth: 2 }),
  fc.string({ maxLength: 30 }),
  fc.dictionary(
    fc.constantFrom(
      "pid",
      "tgid",
      "cpumask",
      "listenerId",
      "listener_id",
      "afterSeq",
      "fields",
      "heartbeatMs",
      "overflow",
    ),
    fc.jsonValue({ maxDepth: 1 }),
    { maxKeys: 3 },
  ).map((o) => JSON.stringify(o)),
);

/** An arbitrary request body for a method: junk, a mangled real message, or arbitrary JSON. */
function bodyOf(method: DescMethod, useJson: boolean): fc.Arbitrary<Uint8Array> {
  const real = messageOf(method.input).map((m) => (useJson ? new TextEncoder().encode(m.json) : m.binary));
  const mangled = fc.tuple(real, fc.nat(), fc.nat(255)).map(([b, at, v]) => {
    const c = b.slice();
    if (c.byteLength > 0) c[at % c.byteLength] = v;
    return c;
  });
  const truncated = fc.tuple(real, fc.nat()).map(([b, at]) =>
    b.subarray(0, b.byteLength === 0 ? 0 : at % b.byteLength)
  );
  return fc.oneof(
    real,
    mangled,
    truncated,
    fc.uint8Array({ maxLength: 48 }),
    jsonish.map((s) => new TextEncoder().encode(s)),
  );
}

/** One or more enveloped messages: flags and length fields honest or not, possibly cut short. */
function envelopesOf(payload: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  const one = fc.tuple(
    payload,
    fc.oneof(fc.constant(0), fc.constantFrom(1, 2, 0x80, 0x81), fc.nat(255)),
    fc.oneof(fc.constant(-1), fc.nat(), fc.nat(64)),
  )
    .map(([p, flags, length]) => {
      const out = new Uint8Array(5 + p.byteLength);
      out[0] = flags;
      new DataView(out.buffer).setUint32(1, length === -1 ? p.byteLength : length);
      out.set(p, 5);
      return out;
    });
  return fc.tuple(fc.array(one, { minLength: 0, maxLength: 3 }), fc.oneof(fc.constant(-1), fc.nat()))
    .map(([parts, cut]) => {
      const all = new Uint8Array(parts.flatMap((p) => [...p]));
      return cut === -1 || all.byteLength === 0 ? all : all.subarray(0, cut % all.byteLength);
    });
}

/** Headers a client may send wrong: timeouts, encodings, versions, and anything else. */
const extraHeaders: fc.Arbitrary<Record<string, string>> = fc.dictionary(
  fc.oneof(
    fc.constantFrom(
      "connect-timeout-ms",
      "grpc-timeout",
      "content-encoding",
      "connect-content-encoding",
      "grpc-encoding",
      "connect-accept-encoding",
      "grpc-accept-encoding",
      "accept-encoding",
      "connect-protocol-version",
      "x-user-agent",
      "authorization",
    ),
    fc.stringMatching(/^x-[a-z0-9-]{1,12}$/),
  ),
  fc.oneof(
    fc.constantFrom("gzip", "br", "identity", "1", "0", "-1", "99999999999", "1S", "1H", "x", ""),
    fc.stringMatching(/^[ -~]{0,24}$/).map((s) => s.trim()),
  ),
  { maxKeys: 3 },
);

interface Reply {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Uint8Array;
  readonly trailers: Record<string, string>;
  /** The response was cut by the test: a stream that opened with a message. */
  readonly opened: boolean;
}

const h1agent = new Agent({ keepAlive: true, maxSockets: 4 });
afterAll(() => h1agent.destroy());

/** Whether an enveloped body holds a whole first message (flags 0 or 1): a stream that opened. */
function hasMessage(body: Uint8Array): boolean {
  if (body.byteLength < 5) return false;
  return (body[0]! & 0b10000010) === 0 &&
    body.byteLength >= 5 + new DataView(body.buffer, body.byteOffset).getUint32(1);
}

const flat = (h: IncomingHttpHeaders | Record<string, unknown>) =>
  Object.fromEntries(
    Object.entries(h).filter(([k]) => !k.startsWith(":")).map((
      [k, v],
    ) => [k, Array.isArray(v) ? v.join(", ") : String(v)]),
  );

function overH1(path: string, headers: Record<string, string>, body: Uint8Array, streaming: boolean): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = h1request(new URL(path, running.url), { method: "POST", headers, agent: h1agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (d: Buffer) => {
        chunks.push(d);
        if (streaming && hasMessage(Buffer.concat(chunks))) {
          req.destroy();
          resolve({
            status: res.statusCode!,
            headers: flat(res.headers),
            body: Buffer.concat(chunks),
            trailers: {},
            opened: true,
          });
        }
      });
      res.on(
        "end",
        () =>
          resolve({
            status: res.statusCode!,
            headers: flat(res.headers),
            body: Buffer.concat(chunks),
            trailers: {},
            opened: false,
          }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

let session: ClientHttp2Session | undefined;
afterAll(() => session?.close());

function overH2(path: string, headers: Record<string, string>, body: Uint8Array, streaming: boolean): Promise<Reply> {
  if (session === undefined || session.closed || session.destroyed) {
    session = h2connect(running.url);
    session.on("error", () => {});
  }
  const s = session;
  return new Promise((resolve, reject) => {
    const req = s.request({ ":method": "POST", ":path": path, ...headers });
    let status = 0, got: Record<string, string> = {}, trailers: Record<string, string> = {};
    const chunks: Buffer[] = [];
    req.on("response", (h) => {
      status = Number(h[":status"]);
      got = flat(h);
    });
    req.on("trailers", (t) => (trailers = flat(t)));
    req.on("data", (d: Buffer) => {
      chunks.push(d);
      if (streaming && hasMessage(Buffer.concat(chunks))) {
        req.close();
        resolve({ status, headers: got, body: Buffer.concat(chunks), trailers, opened: true });
      }
    });
    req.on("end", () => resolve({ status, headers: got, body: Buffer.concat(chunks), trailers, opened: false }));
    req.on("error", reject);
    req.end(body);
  });
}

/** The enveloped messages of a body (a partial one at the end is an error), compressed ones inflated. */
function envelopes(body: Uint8Array): { flags: number; data: Uint8Array }[] {
  const out = [];
  for (let at = 0; at < body.byteLength;) {
    expect(at + 5).toBeLessThanOrEqual(body.byteLength);
    const n = new DataView(body.buffer, body.byteOffset + at).getUint32(1);
    expect(at + 5 + n).toBeLessThanOrEqual(body.byteLength);
    const flags = body[at]!, data = body.subarray(at + 5, at + 5 + n);
    out.push({ flags, data: flags & 0x01 ? new Uint8Array(gunzipSync(data)) : data });
    at += 5 + n;
  }
  return out;
}

const NO_CONNECT_ERROR = new ConnectError("the body is no Connect error", Code.Unknown);

/** An RPC error as the test requires it: a code other than INTERNAL or UNKNOWN, and taskwire's ErrorDetail. */
function requireDetailed(err: ConnectError | undefined, what: string): string {
  expect(err, what).toBeDefined();
  expect([Code.Internal, Code.Unknown], `${what}: ${err!.code} ${err!.rawMessage}`).not.toContain(err!.code);
  expect(err!.findDetails(ErrorDetailSchema), `${what}: ${err!.rawMessage}`).toHaveLength(1);
  expect(err!.rawMessage.length).toBeLessThanOrEqual(1100);
  return Code[err!.code];
}

/** What the server answered, checked: "ok", "opened", an error code, or an HTTP refusal before any RPC. */
function verdict(protocol: Protocol, method: DescMethod, useJson: boolean, r: Reply, what: string): string {
  if (r.opened) return "opened";
  if (protocol === "grpc") {
    expect(r.status, what).toBe(200);
    const status = findTrailerError(new Headers(Object.keys(r.trailers).length > 0 ? r.trailers : r.headers));
    if (status === undefined) {
      expect(r.trailers["grpc-status"] ?? r.headers["grpc-status"], what).toBe("0");
      return "ok";
    }
    return requireDetailed(status, what);
  }
  // No RPC: an unsupported media type or method (a Connect error, NOT_FOUND among them, is JSON).
  if ([404, 405, 415].includes(r.status) && !/^application\/json/.test(r.headers["content-type"] ?? "")) {
    return `http ${r.status}`;
  }
  if (protocol === "connect-unary") {
    const body = r.headers["content-encoding"] === "gzip" ? new Uint8Array(gunzipSync(r.body)) : r.body;
    if (r.status === 200) {
      const out = useJson
        ? fromJsonString(method.output, new TextDecoder().decode(body))
        : fromBinary(method.output, body);
      expect(out, what).toBeDefined();
      return "ok";
    }
    expect(r.headers["content-type"], what).toMatch(/^application\/json/);
    return requireDetailed(errorFromJsonBytes(body, undefined, NO_CONNECT_ERROR), what);
  }
  expect(r.status, what).toBe(200);
  const frames = envelopes(r.body);
  const last = frames[frames.length - 1];
  if (protocol === "grpc-web") {
    expect(last && last.flags & 0x80, `${what}: a trailer frame`).toBeTruthy();
    const err = findTrailerError(trailerParse(last!.data));
    return err === undefined ? "ok" : requireDetailed(err, what);
  }
  expect(last && last.flags & 0x02, `${what}: an end-stream message`).toBeTruthy();
  const end = JSON.parse(new TextDecoder().decode(last!.data)) as { error?: unknown };
  if (end.error === undefined) return "ok";
  return requireDetailed(errorFromJson(end.error as never, undefined, NO_CONNECT_ERROR), what);
}

const CONTENT: Record<Protocol, (json: boolean) => string> = {
  "connect-unary": (j) => (j ? "application/json" : "application/proto"),
  "connect-stream": (j) => (j ? "application/connect+json" : "application/connect+proto"),
  "grpc-web": (j) => (j ? "application/grpc-web+json" : "application/grpc-web+proto"),
  grpc: (j) => (j ? "application/grpc+json" : "application/grpc"),
};

function requestsFor(protocol: Protocol) {
  const kinds = protocol === "connect-unary"
    ? methods.filter((m) => m.methodKind === "unary")
    : protocol === "connect-stream"
    ? methods.filter((m) => m.methodKind !== "unary")
    : methods;
  return fc.constantFrom(...kinds).chain((method) =>
    fc.record({
      method: fc.constant(method),
      json: fc.boolean(),
      h2: protocol === "grpc" ? fc.constant(true) : fc.boolean(),
      headers: extraHeaders,
    }).chain((r) => {
      const payload = bodyOf(method, r.json);
      const body = protocol === "connect-unary" ? payload : envelopesOf(payload);
      return body.map((b) => ({ ...r, body: b }));
    })
  );
}

async function healthy(): Promise<void> {
  const res = await fetch(`${running.url}/healthz`);
  expect(res.status).toBe(200);
  expect(await res.json()).toMatchObject({ status: "ok" });
}

describe("fuzz: the request paths of a real server", () => {
  const seen = new Map<string, number>();
  afterAll(() => console.log(`request verdicts: ${json(Object.fromEntries([...seen].sort()))}`));

  it.each(["connect-unary", "connect-stream", "grpc-web", "grpc"] as const)(
    "%s: a success or a well-formed error with an ErrorDetail",
    async (protocol) => {
      await check(
        `requests: ${protocol}`,
        fc.asyncProperty(requestsFor(protocol), async ({ method, json: useJson, h2, headers, body }) => {
          const path = `/${TaskStats.typeName}/${method.name}`;
          const all = {
            ...headers,
            "content-type": CONTENT[protocol](useJson),
            ...(protocol === "grpc" && { te: "trailers" }),
          };
          const what = `${protocol}${h2 ? " h2" : ""} ${method.name} ${json(all)} ${
            Buffer.from(body).toString("hex").slice(0, 200)
          }`;
          const streaming = method.methodKind !== "unary";
          const reply = await (h2 ? overH2 : overH1)(path, all, body, streaming);
          const v = verdict(protocol, method, useJson, reply, what);
          seen.set(`${protocol} ${v}`, (seen.get(`${protocol} ${v}`) ?? 0) + 1);
        }),
        150,
      );
      await healthy();
    },
    60_000 * SCALE,
  );

  it("left no stream behind", async () => {
    await expect.poll(() => running.server.stats().streams, { timeout: 5000 }).toBe(0);
    await healthy();
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The plaintext port's protocol sniffer

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

const firstBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  // A partial preface, alone or followed by anything.
  fc.tuple(fc.integer({ min: 1, max: PREFACE.byteLength }), fc.uint8Array({ maxLength: 40 })).map(([n, rest]) =>
    new Uint8Array([...PREFACE.subarray(0, n), ...rest])
  ),
  // A whole preface, then arbitrary frames.
  fc.uint8Array({ maxLength: 80 }).map((rest) => new Uint8Array([...PREFACE, ...rest])),
  // The start of an HTTP/1.1 request, then anything.
  fc.tuple(
    fc.constantFrom(
      "GET / HTTP/1.1\r\n",
      "POST /taskwire.v1.TaskStats/GetInfo HTTP/1.1\r\nHost: x\r\n",
      "PRI * HTTP/1.1\r\n",
      "P",
      "PR",
    ),
    fc.uint8Array({ maxLength: 40 }),
  )
    .map(([start, rest]) => new Uint8Array([...Buffer.from(start), ...rest])),
);

/** Writes `bytes` in pieces of the given sizes, with a pause between some, then closes the connection the given way. */
function sendPieces(
  bytes: Uint8Array,
  sizes: number[],
  pauses: boolean[],
  ending: "end" | "destroy" | "linger",
): Promise<void> {
  return new Promise((resolve) => {
    const socket = tcpConnect(running.listening.port, "127.0.0.1");
    socket.on("error", () => {});
    socket.on("data", () => {});
    socket.once("close", () => resolve());
    socket.once("connect", async () => {
      let at = 0;
      for (let i = 0; at < bytes.byteLength; i++) {
        const n = Math.max(1, sizes[i % Math.max(1, sizes.length)] ?? 1);
        if (socket.destroyed) break;
        socket.write(bytes.subarray(at, at + n));
        at += n;
        if (pauses[i % Math.max(1, pauses.length)]) await new Promise((r) => setTimeout(r, 2));
      }
      if (ending === "end") socket.end();
      else if (ending === "destroy") socket.destroy();
      else setTimeout(() => socket.destroy(), 20);
      setTimeout(() => socket.destroy(), 100).unref(); // whatever the server does with a half-closed socket
    });
  });
}

async function h2cAnswers(): Promise<void> {
  const s = h2connect(running.url);
  try {
    const status = await new Promise<number>((resolve, reject) => {
      const req = s.request({ ":path": "/healthz" });
      req.on("response", (h) => resolve(Number(h[":status"])));
      req.on("error", reject);
      req.end();
    });
    expect(status).toBe(200);
  } finally {
    s.close();
  }
}

describe("fuzz: the plaintext port's protocol sniffer", () => {
  it("arbitrary first bytes in arbitrary TCP writes: the server keeps answering HTTP/1.1 and h2c", async () => {
    await check(
      "sniffer",
      fc.asyncProperty(
        firstBytes,
        fc.array(fc.integer({ min: 1, max: 30 }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 6 }),
        fc.constantFrom("end" as const, "destroy" as const, "linger" as const),
        async (bytes, sizes, pauses, ending) => {
          await sendPieces(bytes, sizes, pauses, ending);
          await healthy();
        },
      ),
      200,
    );
    await h2cAnswers();
  }, 60_000 * SCALE);
});
