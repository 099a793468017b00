import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { type StreamTarget, writeStreamBody } from "../src/runtime/_stream-writer.ts";
import { claimStreamBody, type StreamBodySlot, streamingResponse } from "../src/server/stream-bodies.ts";

// A Node response stand-in: records what is written; write() answers `room` (false: wait for 'drain').
class Target extends EventEmitter implements StreamTarget {
  head: [number, Record<string, string>] | undefined;
  chunks: string[] = [];
  ended = false;
  destroyedWith: Error | undefined;
  destroyed = false;
  room = true;
  get writableEnded(): boolean {
    return this.ended;
  }
  writeHead(status: number, headers: Record<string, string>): void {
    this.head = [status, headers];
  }
  write(chunk: Uint8Array): boolean {
    this.chunks.push(new TextDecoder().decode(chunk));
    return this.room;
  }
  end(): void {
    this.ended = true;
  }
  destroy(err?: Error): void {
    this.destroyed = true;
    this.destroyedWith = err;
    this.emit("close");
  }
}

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

// A body that yields `parts`, then waits for `more` to yield "late", recording how it was closed. A throw() waits
// behind the pending read, as with a subscription (which its abort signal wakes).
function body(parts: string[], o: { fail?: Error } = {}) {
  const seen = { thrown: false, returned: false };
  let release!: () => void;
  const more = new Promise<void>((r) => (release = r));
  const gen = (async function* () {
    try {
      for (const p of parts) yield bytes(p);
      if (o.fail) throw o.fail;
      await more;
      yield bytes("late");
    } catch (err) {
      seen.thrown = true;
      throw err;
    } finally {
      seen.returned = true;
    }
  })();
  return { gen, seen, release };
}

async function* finite(parts: string[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield bytes(p);
}

const response = (): Response => new Response(null, { status: 200, headers: { "content-type": "application/x" } });
const turns = async (n = 5): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

describe("writeStreamBody", () => {
  it("writes the head, each chunk as it comes, then ends", async () => {
    const t = new Target();
    await writeStreamBody(response(), finite(["a", "b", "c"]), t);
    expect(t.head).toEqual([200, { "content-type": "application/x" }]);
    expect(t.chunks).toEqual(["a", "b", "c"]);
    expect(t.ended).toBe(true);
    expect(t.listenerCount("close")).toBe(0);
  });

  it("waits for 'drain' when a write says so, and goes on after it", async () => {
    const t = new Target();
    t.room = false;
    const done = writeStreamBody(response(), finite(["a", "b"]), t);
    await turns();
    expect(t.chunks).toEqual(["a"]); // waiting: the next chunk is not even read
    t.room = true;
    t.emit("drain");
    await done;
    expect(t.chunks).toEqual(["a", "b"]);
    expect(t.ended).toBe(true);
  });

  it("tells the body through throw() when the client goes, and writes nothing after", async () => {
    const t = new Target();
    const b = body(["a"]);
    const done = writeStreamBody(response(), b.gen, t);
    await turns();
    t.emit("close");
    await done;
    b.release();
    await turns();
    expect(b.seen.thrown).toBe(true);
    expect(b.seen.returned).toBe(true);
    expect(t.ended).toBe(false);
    expect(t.chunks).toEqual(["a"]);
  });

  it("tells the body when the response fails, and leaves no listener behind", async () => {
    const t = new Target();
    const b = body(["a"]);
    const done = writeStreamBody(response(), b.gen, t);
    await turns();
    t.emit("error", new Error("EPIPE"));
    await done;
    b.release();
    await turns();
    expect(b.seen.thrown).toBe(true);
    expect(t.listenerCount("close") + t.listenerCount("error")).toBe(0);
  });

  it("destroys the response with the body's error when the body fails", async () => {
    const t = new Target();
    const err = new Error("boom");
    await writeStreamBody(response(), body(["a"], { fail: err }).gen, t);
    expect(t.destroyedWith).toBe(err);
    expect(t.ended).toBe(false);
  });

  it("does not read a body whose response is gone already, and closes it", async () => {
    const t = new Target();
    t.destroyed = true;
    const b = body(["a"]);
    await writeStreamBody(response(), b.gen, t);
    await turns();
    expect(t.head).toBeUndefined();
    expect(await b.gen.next()).toEqual({ done: true, value: undefined }); // closed, never started
  });

  it("does not read a body whose HTTP/2 response is gone already (no destroyed of its own: its stream's)", async () => {
    const t = new Target();
    Object.defineProperty(t, "destroyed", { value: undefined }); // as an Http2ServerResponse
    Object.assign(t, { stream: { destroyed: true, closed: true } });
    const b = body(["a"]);
    await writeStreamBody(response(), b.gen, t); // settles: its "close" was emitted before the writer came
    expect(t.head).toBeUndefined();
    expect(await b.gen.next()).toEqual({ done: true, value: undefined });
  });

  it("closes the body when a write throws (the response's 'close' comes after the writer is over)", async () => {
    const t = new Target();
    t.write = () => {
      throw new Error("write failed");
    };
    const b = body(["a"]);
    await writeStreamBody(response(), b.gen, t);
    await turns();
    expect(t.destroyedWith?.message).toBe("write failed");
    expect(b.seen.returned).toBe(true);
  });
});

describe("streamingResponse and claimStreamBody", () => {
  it("leaves the body in the adapter's slot under a bodiless response", () => {
    const slot: StreamBodySlot = {};
    const b = finite(["a"]);
    const res = streamingResponse(200, new Headers({ "x-a": "1" }), b, slot);
    expect(res.body).toBeNull();
    expect(claimStreamBody(slot, res)).toEqual({ body: b });
  });

  it("makes a ReadableStream of the body without a slot, as before", async () => {
    const res = streamingResponse(200, undefined, finite(["a", "b"]), undefined);
    expect(await res.text()).toBe("ab");
  });

  it("keeps a replaced response's status and headers, with the body as a stream", async () => {
    const slot: StreamBodySlot = {};
    streamingResponse(200, new Headers(), finite(["a", "b"]), slot);
    const replaced = new Response(null, { status: 200, headers: { "access-control-allow-origin": "*" } });
    const claimed = claimStreamBody(slot, replaced);
    expect(claimed !== undefined && "response" in claimed).toBe(true);
    const res = (claimed as { response: Response }).response;
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(await res.text()).toBe("ab");
  });

  it("keeps a replacement that says something else (an error page) as it is, and closes the body", async () => {
    const slot: StreamBodySlot = {};
    let closed = false;
    const b = (async function* () {
      try {
        yield bytes("a");
      } finally {
        closed = true;
      }
    })();
    await b.next(); // started, as connect-es's body is by the time the app answers
    streamingResponse(200, new Headers(), b, slot);
    const page = new Response("internal error\n", { status: 500 });
    expect(claimStreamBody(slot, page)).toEqual({ response: page });
    await turns();
    expect(closed).toBe(true);
  });

  it("claims nothing where the app left no body", () => {
    expect(claimStreamBody({}, response())).toBeUndefined();
  });
});
