/**
 * Ingest during the fastest exit storm this machine makes (threads created
 * and joined four at a time): one storm, three listeners at once —
 *   plain: one socket for all CPUs, default buffer, main-thread loop (getdelays -l);
 *   taskwire source: per-CPU sockets, 32 MiB buffers, reader worker;
 *   taskwire subscriber: a separate process streaming from the server over loopback.
 * taskwire's CPU time is this process's (server, source and worker), per 1,000 records.
 */
import { listenNode } from "../src/runtime/node.ts";
import { createServer } from "../src/server/server.ts";
import { openNetlinkSource } from "../src/sources/netlink/netlink-source.ts";
import { runHelper } from "../test/native.ts";
import { startChild } from "./_child.ts";

export interface IngestOptions {
  threads: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs the benchmark; returns rows for the table. */
export async function benchNetlinkIngest(o: IngestOptions): Promise<string[][]> {
  const source = await openNetlinkSource();
  const server = createServer({ source });
  const listening = await listenNode(server, { port: 0 });
  const cpus = source.possible.list;
  try {
    const plain = await startChild(new URL("./_plain-listener.js", import.meta.url), [cpus]);
    const sub = await startChild(new URL("./_subscriber.js", import.meta.url), [listening.url, cpus]);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const storm = await runHelper(["storm", String(o.threads), "4"]);
    const seconds = (performance.now() - t0) / 1000;
    // Let every reader catch up: wait until the source's count stops moving.
    for (let last = -1; source.info().records !== last; await sleep(300)) last = source.info().records;
    const cpu = process.cpuUsage(cpu0);
    await sleep(500);
    const p = await plain.finish<{ records: number; drops: number; rcvbuf: number; cpuMs: number }>();
    const s = await sub.finish<{ exits: number; lost: number }>();
    const info = source.info();
    const tw = (cpu.user + cpu.system) / 1000;
    if (storm.code !== 0) throw new Error(`storm helper exited ${storm.code}`);
    return [
      [
        "storm",
        `${o.threads} thread exits in ${seconds.toFixed(2)} s = ${Math.round(o.threads / seconds)} exits/s produced`,
        "",
        "",
        "",
      ],
      ["listener", "records received", "kernel drops", "CPU ms / 1k records", "receive buffer"],
      [
        "plain (getdelays-style)",
        String(p.records),
        String(p.drops),
        (p.cpuMs / Math.max(p.records, 1) * 1000).toFixed(1),
        `${p.rcvbuf} B`,
      ],
      [
        "taskwire netlink source",
        String(info.records),
        String(info.kernelDrops),
        (tw / Math.max(info.records, 1) * 1000).toFixed(1),
        `${info.socketBuffer} B per CPU`,
      ],
      ["taskwire subscriber (loopback)", String(s.exits), `lost ${s.lost}`, "(separate process)", ""],
    ];
  } finally {
    await listening.close();
  }
}
