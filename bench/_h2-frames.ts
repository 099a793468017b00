/**
 * Raw HTTP/2 frames, as a hostile client writes them (bench/_reset-flood.ts, and the rapid-reset and transport
 * tests): no HTTP/2 library would send a stream's HEADERS and its RST_STREAM in one write, or thousands at once.
 */

/** One frame: a 9-byte head (length, type, flags, stream id), then `payload`. */
export function h2Frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** The client's connection preface and an empty SETTINGS frame. */
export const H2_PREFACE: Buffer = Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), h2Frame(4, 0, 0)]);

/** An HPACK header block of literal fields without indexing (names and values under 127 bytes). */
export function hpackLiterals(headers: Record<string, string>): Buffer {
  return Buffer.concat(
    Object.entries(headers).map(([name, value]) =>
      Buffer.concat([Buffer.from([0, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)])
    ),
  );
}

/** A Connect JSON GetInfo request's header block: :method POST and :scheme http from HPACK's static table. */
export const GET_INFO_HEADERS: Buffer = Buffer.concat([
  Buffer.from([0x83, 0x86]),
  hpackLiterals({
    ":path": "/taskwire.v1.TaskStats/GetInfo",
    ":authority": "localhost",
    "content-type": "application/json",
  }),
]);

/** `n` GetInfo streams from id `first` on: HEADERS (END_STREAM), each followed by its RST_STREAM (CANCEL) if `reset`. */
export function getInfoStreams(n: number, o: { first?: number; reset: boolean }): Buffer {
  const cancel = Buffer.from([0, 0, 0, 8]);
  const frames: Buffer[] = [];
  for (let i = 0, id = o.first ?? 1; i < n; i++, id += 2) {
    frames.push(h2Frame(1, 5, id, GET_INFO_HEADERS));
    if (o.reset) frames.push(h2Frame(3, 0, id, cancel));
  }
  return Buffer.concat(frames);
}
