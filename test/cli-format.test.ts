/** The CLI's pure pieces: event lines, loss lines, terminal escaping, thread sums, run completion. */
import { create } from "@bufbuild/protobuf";
import { ExitEventSchema, LossReason, TaskStatsSchema } from "@taskwire/client";
import { describe, expect, it } from "vitest";
import { formatEvent } from "../src/cli/format.ts";
import { createRunCollector } from "../src/cli/run-collector.ts";
import { sumThreads } from "../src/cli/thread-sum.ts";
import { formatReport } from "../src/cli/report.ts";
import { uidLimitNote } from "../src/cli/event-input.ts";

function exitEv(pid: number, tgid: number, stats: Record<string, unknown>, group?: Record<string, unknown>) {
  return create(ExitEventSchema, {
    seq: 1n,
    cpu: 1,
    event: {
      case: "exit",
      value: { pid, tgid, pidStats: stats, ...(group !== undefined && { tgidStats: group }) },
    },
  });
}

describe("event lines", () => {
  it("prints a loss with its reason, not as cpu 0", () => {
    const ev = create(ExitEventSchema, {
      seq: 40n,
      cpu: 0,
      event: {
        case: "lost",
        value: { count: 3n, firstSeq: 38n, lastSeq: 40n, reason: LossReason.SUBSCRIBER_OVERFLOW },
      },
    });
    const line = formatEvent(ev);
    expect(line).toMatch(/^LOST 3 event\(s\), seq 38-40: subscriber overflow: this listener's queue was full/);
    expect(line).not.toMatch(/cpu 0/);
    const kernel = create(ExitEventSchema, {
      seq: 2n,
      cpu: 5,
      event: { case: "lost", value: { count: 2n, firstSeq: 1n, lastSeq: 2n, reason: LossReason.KERNEL_OVERFLOW } },
    });
    expect(formatEvent(kernel)).toMatch(/^LOST 2 event\(s\) on cpu 5, seq 1-2: kernel overflow/);
    const source = create(ExitEventSchema, {
      seq: 9n,
      cpu: 3,
      event: { case: "lost", value: { count: 1n, firstSeq: 9n, lastSeq: 9n, reason: LossReason.SOURCE_ERROR } },
    });
    expect(formatEvent(source)).toMatch(/^LOST 1 event\(s\) on cpu 3, seq 9-9: source error: .*server bug/);
    const budget = create(ExitEventSchema, {
      seq: 20n,
      cpu: 1,
      event: { case: "lost", value: { count: 5n, firstSeq: 16n, lastSeq: 20n, reason: LossReason.MEMORY_BUDGET } },
    });
    expect(formatEvent(budget)).toMatch(
      /^LOST 5 event\(s\), seq 16-20: memory budget: .*full.*raise serve --memory-budget\)/,
    );
  });

  it("decodes the exit status and escapes a comm a user chose", () => {
    const line = formatEvent(exitEv(7, 7, { acComm: "evil\u001b[2J\n", acExitcode: 0x89, acPpid: 1, acUid: 1000 }));
    expect(line).toContain('comm "evil\\u001b[2J\\n"'); // JSON-quoted, then control characters escaped
    expect([...line].some((c) => c.charCodeAt(0) < 0x20)).toBe(false);
    expect(line).toContain("signal 9 (SIGKILL, core)");
    expect(formatEvent(exitEv(7, 7, { acExitcode: 3 << 8 }))).toContain(" exit 3 ");
  });

  it("says a field the stream did not carry (--fields) as -, comm too, not as a blank comm", () => {
    const masked = formatEvent(exitEv(7, 7, { acExitcode: 3 << 8 }));
    expect(masked).toContain(" ppid - tgid 7 uid - comm - exit 3 age - ");
    expect(formatEvent(exitEv(0, 7, { acComm: "", acExitcode: 0 }))).toContain(' comm "" exit 0 ');
  });
});

describe("a process's accounting from its thread records", () => {
  it("sums counters, keeps maxima and the leader's identity", () => {
    const leader = create(TaskStatsSchema, {
      acComm: "make",
      acPid: 10,
      acExitcode: 512,
      acUtime: 100n,
      hiwaterRss: 50n,
      cpuDelayMax: 7n,
      cpuDelayMin: 0n,
    });
    const worker = create(TaskStatsSchema, {
      acComm: "worker",
      acPid: 11,
      acUtime: 30n,
      hiwaterRss: 40n,
      cpuDelayMax: 9n,
      cpuDelayMin: 2n,
    });
    const sum = sumThreads([worker, leader], leader);
    expect(sum).toMatchObject({ acComm: "make", acPid: 10, acExitcode: 512, acUtime: 130n, hiwaterRss: 50n });
    expect(sum.cpuDelayMax).toBe(9n);
    expect(sum.cpuDelayMin).toBe(2n); // a zero minimum is "none recorded"
    expect(formatReport(sum)).toMatch(/status exit 2/);
    // A live task (get pid/tgid) has no exit status yet; delay accounting off is said, not shown as zero delays.
    const live = formatReport(sum, { live: true, delayacct: false });
    expect(live).toMatch(/status running/);
    expect(live).not.toMatch(/status exit/);
    expect(live).toMatch(/\(delay accounting is off on the server's kernel: every delay below reads 0\)/);
    expect(formatReport(sum, { delayacct: true })).not.toMatch(/delay accounting is off/);
    expect(live).toMatch(/rounded down to a multiple of 1,024 by the kernel/);
  });

  it("is complete after a single-threaded process's record, or after a multithreaded one's group record", async () => {
    const one = createRunCollector();
    one.add(exitEv(99, 99, {}));
    one.watch(5);
    one.add(exitEv(5, 5, { acUtime: 1n }));
    const r1 = await one.finish(2000, 50);
    expect(r1).toMatchObject({ complete: true, problem: undefined });
    expect(r1.threads).toHaveLength(1); // pid 99 was not the command's

    const many = createRunCollector();
    many.watch(8);
    many.add(exitEv(8, 8, { acUtime: 1n }));
    many.add(exitEv(9, 8, { acUtime: 2n }));
    const started = Date.now();
    const pending = many.finish(2000, 50);
    setTimeout(() => many.add(exitEv(10, 8, { acUtime: 3n }, { cpuDelayTotal: 5n })), 300);
    const r2 = await pending;
    expect(Date.now() - started).toBeGreaterThanOrEqual(250); // two records: it waited for the group record
    expect(r2.complete).toBe(true);
    expect(r2.total?.acUtime).toBe(6n);
    expect(r2.group?.cpuDelayTotal).toBe(5n);
  });

  it("waits for the leader's record when the group record (another CPU) arrives first", async () => {
    const c = createRunCollector();
    c.watch(8);
    c.add(exitEv(9, 8, { acUtime: 2n }));
    c.add(exitEv(10, 8, { acUtime: 3n }, { cpuDelayTotal: 5n })); // the last thread, with the group record
    const pending = c.finish(2000, 50);
    setTimeout(() => c.add(exitEv(8, 8, { acUtime: 300n })), 200); // the leader, read later from its own CPU
    const r = await pending;
    expect(r.complete).toBe(true);
    expect(r.total?.acUtime).toBe(305n);
  });

  it("says plainly when the record never came, and names the loss", async () => {
    const c = createRunCollector();
    c.watch(3);
    c.add(
      create(ExitEventSchema, {
        seq: 9n,
        event: {
          case: "lost",
          value: { count: 4n, firstSeq: 6n, lastSeq: 9n, reason: LossReason.SUBSCRIBER_OVERFLOW },
        },
      }),
    );
    const r = await c.finish(100);
    expect(r.complete).toBe(false);
    expect(r.total).toBeUndefined();
    expect(r.problem).toMatch(/^no exit record of the command arrived; the stream reported loss while it ran: LOST 4/);
  });
});

describe("a uid-limited principal's --uid filter", () => {
  const limited = { uidLimited: true, uids: [33, 1000] };
  it("is said to match nothing when it names none of the principal's uids", () => {
    expect(uidLimitNote([0, 7], limited)).toBe(
      "note: you see only the tasks of uids 33, 1000 (your principal's limit); --uid 0,7 names none of them, so no exit will come",
    );
    expect(uidLimitNote([0], { uidLimited: true, uids: [] })).toMatch(/^note: you see no task/);
  });

  it("says nothing when one of its uids is the principal's, or without a filter or a limit", () => {
    expect(uidLimitNote([0, 1000], limited)).toBeUndefined();
    expect(uidLimitNote([], limited)).toBeUndefined();
    expect(uidLimitNote([0], { uidLimited: false, uids: [] })).toBeUndefined();
  });
});
