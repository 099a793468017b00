/**
 * A uid-limited principal on the real kernel: GetPid judged by the task's
 * ac_uid, GetTgid by its group leader's (the kernel's group record leaves
 * ac_uid 0 whoever owns the group), so a principal limited to root's uid sees
 * no other user's groups, and one limited to a user's uid sees that user's.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTaskwireClient, TaskNotFoundError } from "@taskwire/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAuthenticator } from "../src/auth/authenticator.ts";
import { hashToken, newToken } from "../src/auth/tokens.ts";
import { sameLeader } from "../src/rpc/service.ts";
import { openNetlinkSource } from "../src/sources/netlink/netlink-source.ts";
import { eventually, type Running, startServer } from "./helpers.ts";
import { netlinkMissing } from "./native.ts";
import { UID } from "./setpriv.ts";

const missing = await netlinkMissing();
const suite = missing === undefined ? describe : describe.skip;
const title = (t: string) => (missing === undefined ? t : `${t} SKIPPED: ${missing}`);

suite(title("uid-limited principals on the real kernel"), () => {
  const tokens = { nobody: newToken(), root: newToken() };
  let running: Running;
  let sleeper: ChildProcess;
  beforeAll(async () => {
    const file = join(mkdtempSync(join(tmpdir(), "taskwire-uids-")), "auth.json");
    writeFileSync(
      file,
      JSON.stringify({
        principals: { nobody: { roles: ["read"], uids: [UID] }, root: { roles: ["read"], uids: [0] } },
        tokens: { [hashToken(tokens.nobody)]: "nobody", [hashToken(tokens.root)]: "root" },
      }),
    );
    running = await startServer(await openNetlinkSource(), {}, {
      authenticator: createAuthenticator({ tokenFile: file }),
    });
    sleeper = spawn("setpriv", [`--reuid=${UID}`, `--regid=${UID}`, "--clear-groups", "sleep", "60"], {
      stdio: "ignore",
    });
    const as = createTaskwireClient(running.url, { token: tokens.nobody });
    await eventually(() => as.getPid({ pid: sleeper.pid! }).then(() => true, () => false));
  });
  afterAll(async () => {
    sleeper?.kill("SIGKILL");
    await running?.close();
  });

  it("sees a user's thread group only as that user, and root's principal does not see it", async () => {
    const pid = sleeper.pid!;
    const nobody = createTaskwireClient(running.url, { token: tokens.nobody });
    const root = createTaskwireClient(running.url, { token: tokens.root });
    expect((await nobody.getPid({ pid })).stats?.acUid).toBe(UID);
    const group = await nobody.getTgid({ tgid: pid });
    expect(group.tgid).toBe(pid);
    // The group record's own ac_uid is 0: judged by it, root's principal would see every group and nobody's none.
    expect(group.stats?.acUid ?? 0).toBe(0);
    await expect(root.getPid({ pid })).rejects.toBeInstanceOf(TaskNotFoundError);
    await expect(root.getTgid({ tgid: pid })).rejects.toThrow(new RegExp(`no live task with tgid ${pid}`));
    // Root's own groups stay visible to root's principal, and not to nobody's.
    expect((await root.getTgid({ tgid: process.pid })).tgid).toBe(process.pid);
    await expect(nobody.getTgid({ tgid: process.pid })).rejects.toBeInstanceOf(TaskNotFoundError);
  });

  it("a thread's id is no group's: NOT_FOUND to a limited principal (its group may run under another uid)", async () => {
    // The kernel answers TGID = a thread id with the thread's whole group; a thread may hold credentials of its own.
    const thread = readdirSync("/proc/self/task").map(Number).find((tid) => tid !== process.pid)!;
    const root = createTaskwireClient(running.url, { token: tokens.root });
    expect((await root.getPid({ pid: thread })).stats?.acTgid).toBe(process.pid);
    await expect(root.getTgid({ tgid: thread })).rejects.toThrow(new RegExp(`no live task with tgid ${thread}`));
  });
});

describe("a group's leader read twice (GetTgid for a uid-limited principal)", () => {
  // bacct_add_tsk() works ac_btime out on each read from two clocks whose seconds tick over apart: a live leader's
  // start can read one second apart between two reads a moment apart (a live group was refused NOT_FOUND in CI).
  const leader = (acUid: number, acBtime: number) => ({ acUid, acBtime, acBtime64: BigInt(acBtime) });
  it("is the same task a second apart, and not with another uid or a start further apart", () => {
    expect(sameLeader(leader(1000, 1_700_000_000), leader(1000, 1_700_000_000))).toBe(true);
    expect(sameLeader(leader(1000, 1_700_000_000), leader(1000, 1_700_000_001))).toBe(true);
    expect(sameLeader(leader(1000, 1_700_000_001), leader(1000, 1_700_000_000))).toBe(true);
    expect(sameLeader(leader(1000, 1_700_000_000), leader(1000, 1_700_000_002))).toBe(false); // a reused pid
    expect(sameLeader(leader(1000, 1_700_000_000), leader(0, 1_700_000_000))).toBe(false);
    expect(sameLeader(leader(1000, 1_700_000_000), { acUid: 1000, acBtime: 1_700_000_000 })).toBe(false);
  });
});
