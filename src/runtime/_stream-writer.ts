/**
 * Writes a streaming RPC body (server/stream-bodies.ts) to a Node response
 * as @hono/node-server writes a ReadableStream body, without the stream: the
 * head, each chunk as the body yields it (waiting for 'drain' where a write
 * says so, which the young streams' pacing relies on), then the end. The
 * client going away (or the response failing) is told to the body as
 * connect-es's ReadableStream tells it (its iterator's throw()), and a body
 * that fails destroys the response.
 */

/** The part of a Node response (ServerResponse, Http2ServerResponse) written to. */
export interface StreamTarget {
  writeHead(status: number, headers: Record<string, string>): unknown; // headers go out with the first chunk
  write(chunk: Uint8Array): boolean;
  end(): unknown;
  destroy(err?: Error): unknown;
  once(event: "drain" | "close" | "error", listener: () => void): unknown;
  off(event: "close" | "error", listener: () => void): unknown;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
  /** An HTTP/2 response's stream: an Http2ServerResponse has no `destroyed` of its own. */
  readonly stream?: { readonly destroyed: boolean; readonly closed?: boolean } | undefined;
}

/** Writes `res`'s status and headers, then `body`, to `target`; resolves once it is over (ended, failed or gone). */
export function writeStreamBody(res: Response, body: AsyncIterable<Uint8Array>, target: StreamTarget): Promise<void> {
  const it = body[Symbol.asyncIterator]();
  return new Promise<void>((resolve) => {
    let over = false;
    const finish = (): void => {
      if (over) return;
      over = true;
      target.off("close", gone);
      target.off("error", gone);
      resolve();
    };
    // The client went away (or the response was destroyed) before the body ended.
    const close = (): void => void Promise.resolve(it.throw?.(undefined) ?? it.return?.()).catch(() => {});
    const gone = (): void => {
      if (over) return;
      finish();
      close();
    };
    const failed = (err: unknown): void => {
      if (over) return;
      finish();
      target.destroy(err instanceof Error ? err : new Error(String(err)));
    };
    const pull = (): void => void it.next().then(flow, failed);
    const flow = (r: IteratorResult<Uint8Array>): void => {
      if (over) return;
      if (r.done === true) {
        finish();
        target.end();
        return;
      }
      try {
        if (target.write(r.value)) pull();
        else target.once("drain", pull);
      } catch (err) {
        // A write that throws leaves the body open (suspended at its last value): it is closed as for a client that
        // went away, or it never is (the "close" that destroy() brings comes after finish()).
        if (over) return;
        failed(err);
        close();
      }
    };
    // Gone already (its "close" is past): an HTTP/2 response says so only through its stream.
    if (target.destroyed || target.stream?.destroyed === true || target.stream?.closed === true) return gone();
    target.once("close", gone);
    target.once("error", gone); // as @hono/node-server's writer: an error on the response ends the body too
    target.writeHead(res.status, Object.fromEntries(res.headers));
    pull();
  });
}
