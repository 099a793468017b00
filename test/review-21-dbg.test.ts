import { create, toBinary } from "@bufbuild/protobuf";
import { encodeEnvelope, type UniversalHandler } from "@connectrpc/connect/protocol";
import { connect as netConnect } from "node:net";
import { it } from "vitest";
import { SubscribeExitsRequestSchema } from "../src/gen/taskwire/v1/taskstats_pb.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { createServer } from "../src/server/server.ts";
import { listenNode } from "../src/runtime/node.ts";
import { eventually, sleep } from "./helpers.ts";
it("dbg", async () => {
  const server = createServer({ source: createSimSource({ cpus: 2, exitRate: 8000, seed: 3 }) });
  const states: string[] = [];
  const hs = server.rpcHandlers as UniversalHandler[];
  const i = hs.findIndex((h) => h.method.name === "SubscribeExits");
  const h = hs[i]!;
  hs[i] = Object.assign(async (req: Parameters<UniversalHandler>[0]) => {
    const k = states.push("handler") - 1;
    const res = await h(req);
    const it = (res.body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    return {
      ...res,
      body: {
        [Symbol.asyncIterator]: () => ({
          next: async () => {
            states[k] = "in next";
            const r = await it.next();
            states[k] = r.done ? "done" : "yielded (consumer writing)";
            return r;
          },
          throw: async (e: unknown) => { states[k] = "throw called"; const r = await it.throw!(e); states[k] = "thrown"; return r; },
          return: async (v: unknown) => { states[k] = "return called"; const r = await it.return!(v); states[k] = "returned"; return r; },
        }),
      },
    };
  }, { ...h });
  const l = await listenNode(server, { port: 0, acceptsPerTurn: 1000 });
  const body = Buffer.from(encodeEnvelope(0, toBinary(SubscribeExitsRequestSchema, create(SubscribeExitsRequestSchema, { cpumask: "0-1" }))));
  const socks = Array.from({ length: Number(process.env.N ?? 40) }, () => {
    const s = netConnect(l.port, "127.0.0.1");
    let n = 0;
    s.on("data", (d) => (n += d.length)); s.on("error", () => {});
    s.write(`POST /taskwire.v1.TaskStats/SubscribeExits HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/connect+proto\r\nConnect-Protocol-Version: 1\r\nContent-Length: ${body.length}\r\n\r\n`);
    s.write(body);
    return { s, got: () => n };
  });
  if (process.env.PAUSE) { await sleep(500); for (const x of socks) x.s.pause(); await sleep(3000); }
  else await eventually(() => socks.every((x) => x.got() > 1024), 15000);
  for (const x of socks) x.s.resetAndDestroy();
  await sleep(3000);
  const tally: Record<string, number> = {};
  for (const st of states) tally[st] = (tally[st] ?? 0) + 1;
  console.log("streams", server.stats().streams, tally);
  await l.close();
}, 30000);
