/**
 * The dashboard at /ui in a real browser: Debian's Chromium driven by
 * playwright-core loads the page a real server serves (the files
 * `npm run build` put in dist/web) and watches exits with the SDK's browser
 * bundle. Events and loss appear, filters and pause work, the connection
 * state follows a server restart, a token can be entered, the page's headers
 * are strict, and against the real kernel a thread storm shows up. CORS for
 * other origins is configurable.
 */
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAuthenticator } from "../src/auth/authenticator.ts";
import { hashToken, newToken } from "../src/auth/tokens.ts";
import { listenNode } from "../src/runtime/node.ts";
import { createServer } from "../src/server/server.ts";
import { UI_CSP } from "../src/server/ui.ts";
import { delayNs, fmtUs, parseCpulist } from "../src/server/ui/_format.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { type Running, sleep, startServer } from "./helpers.ts";
import { netlinkMissing, runHelper } from "./native.ts";

const CHROMIUM = "/usr/bin/chromium";
const BUNDLE = new URL("../dist/web/dashboard.js", import.meta.url).pathname;
const missing = existsSync(CHROMIUM) ? undefined : `${CHROMIUM} (Debian package chromium)`;
if (missing !== undefined && process.env["TASKWIRE_REQUIRE_BROWSER"] === "1") {
  throw new Error(`TASKWIRE_REQUIRE_BROWSER=1 but ${missing} is missing`);
}
const noKernel = await netlinkMissing();

const state = (page: Page) => page.getAttribute("#conn", "data-state");
const count = async (page: Page, id: string) => Number(await page.getAttribute(id, "title") ?? "0");
const column = (page: Page, cls: string) =>
  page.$$eval(`#rows tr.exit td.${cls}`, (tds) => tds.map((t) => t.textContent ?? ""));

// Predicates go in as functions: the page's CSP (no 'unsafe-eval') refuses string ones, as it should.
type Json = string | number | null | readonly (string | number)[];
async function waitFor<A extends Json>(page: Page, fn: (arg: A) => boolean, arg: A, timeout = 20_000): Promise<void> {
  await page.waitForFunction(fn as (arg: unknown) => boolean, arg, { timeout, polling: 100 });
}
const atLeast = (page: Page, selector: string, n: number, timeout?: number) =>
  waitFor(page, ([sel, k]) => document.querySelectorAll(sel).length >= k, [selector, n] as const, timeout);
const stateIs = (page: Page, want: string) =>
  waitFor(page, (w) => document.getElementById("conn")?.dataset["state"] === w, want);

describe.skipIf(missing !== undefined)(
  missing === undefined ? "the dashboard" : `the dashboard SKIPPED: needs ${missing}`,
  () => {
    let running: Running;
    let browser: Browser;
    const errors: string[] = [];
    beforeAll(async () => {
      // Not a skip: the page is part of the build, and a test without it would only time out.
      if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing: run \`npm run build\` first`);
      running = await startServer(createSimSource({ cpus: 4, exitRate: 300, seed: 4 }));
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"],
      });
    }, 60_000);
    afterAll(async () => {
      await browser?.close();
      await running?.close();
    });

    async function open(url: string): Promise<Page> {
      const page = await (await browser.newContext()).newPage();
      page.on("pageerror", (e) => errors.push(e.message));
      page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
      await page.goto(url);
      return page;
    }

    it(
      "shows exits with decoded statuses, the source, the host and the live state; the chart and top-N fill",
      async () => {
        const page = await open(`${running.url}/ui?cpus=0-3`);
        await atLeast(page, "#rows tr.exit", 20);
        expect(await state(page)).toBe("live");
        expect(await page.textContent("#source")).toBe("sim");
        expect(await page.textContent("#host")).toBe(hostname());
        const statuses = await column(page, "status");
        expect(statuses.every((s) => /^(exit \d+|signal \d+ \(SIG\w+(, core)?\))$/.test(s))).toBe(true);
        expect(statuses.some((s) => s !== "exit 0")).toBe(true); // the sim's failures, decoded (256 is "exit 1")
        const times = await column(page, "time");
        expect(times.every((t) => /^\d\d:\d\d:\d\d\.\d{3}$/.test(t))).toBe(true);
        const cpus = (await column(page, "cpu")).map(Number);
        expect(cpus.every((c) => c >= 0 && c <= 3)).toBe(true);
        await atLeast(page, "#top tbody tr:not(.empty)", 3);
        expect(await page.$$eval("#chart canvas", (c) => c.length)).toBe(1);
        expect(await page.$$eval(".u-legend .u-series", (s) => s.map((x) => x.textContent?.trim())))
          .toEqual(expect.arrayContaining(["cpu 0", "cpu 3", "lost"]));
        expect(await count(page, "#count")).toBeGreaterThanOrEqual(20);
        expect(await page.textContent("#lost")).toBe("0");
        expect(errors).toEqual([]);
        await page.close();
      },
      60_000,
    );

    it("filters by comm, uid and nonzero exit, and caps the rows", async () => {
      const page = await open(`${running.url}/ui`);
      await atLeast(page, "#rows tr.exit", 40);
      const comms = await column(page, "comm");
      expect(new Set(comms).size).toBeGreaterThan(1);
      const pick = comms[0]!;
      await page.fill("#f-comm", pick);
      const shown = await column(page, "comm");
      expect(shown.length).toBeGreaterThan(0);
      expect(shown.every((c) => c.toLowerCase().includes(pick.toLowerCase()))).toBe(true);
      await page.fill("#f-comm", "");
      await page.check("#f-nonzero");
      await atLeast(page, "#rows tr.exit", 3);
      expect((await column(page, "status")).every((s) => s !== "exit 0")).toBe(true);
      await page.uncheck("#f-nonzero");
      await page.fill("#f-uid", "4294967295");
      expect(await page.$$eval("#rows tr.exit", (r) => r.length)).toBe(0);
      await page.fill("#f-uid", "");
      await atLeast(page, "#rows tr", 500, 30_000); // 300/s: the cap holds
      await page.waitForTimeout(1000);
      expect(await page.$$eval("#rows tr", (r) => r.length)).toBe(500);
      await page.close();
    }, 60_000);

    it("pause freezes the table while counting goes on; resume catches up", async () => {
      const page = await open(`${running.url}/ui`);
      await atLeast(page, "#rows tr.exit", 10);
      await page.click("#pause");
      const first = await page.innerText("#rows tr:first-child");
      const counted = await count(page, "#count");
      await page.waitForTimeout(1500);
      expect(await page.innerText("#rows tr:first-child")).toBe(first);
      expect(await count(page, "#count")).toBeGreaterThan(counted);
      expect(await page.textContent("#shown")).toMatch(/paused: \d+ newer events held back/);
      await page.click("#pause");
      await page.waitForTimeout(500);
      expect(await page.innerText("#rows tr:first-child")).not.toBe(first);
      await page.close();
    }, 60_000);

    it("shows loss as prominently as exits, with its reason", async () => {
      // 3000 exits/s in 20 ms ticks puts 60 records at once into a queue of 4: most are lost.
      const fast = await startServer(createSimSource({ cpus: 2, exitRate: 3000, seed: 9, tickMs: 20 }));
      try {
        const page = await open(`${fast.url}/ui?buffer=4`);
        await atLeast(page, "#rows tr.lost", 1);
        expect(await page.textContent("#rows tr.lost")).toMatch(/^.*lost \d+ events: subscriber overflow/);
        await waitFor(
          page,
          () => !["0", undefined].includes(document.getElementById("lost-rate")?.textContent ?? undefined),
          null,
        );
        expect(await count(page, "#lost")).toBeGreaterThan(0);
        expect(await page.getAttribute("body", "class")).toContain("losing");
        expect(await page.textContent("#loss-reasons")).toContain("subscriber overflow");
        expect(await page.$eval("#lost", (e) => getComputedStyle(e).color)).toBe("rgb(255, 77, 79)");
        await page.close();
      } finally {
        await fast.close();
      }
    }, 60_000);

    it("shows reconnecting/disconnected when the server goes, and live again when a new one comes", async () => {
      const first = await startServer(createSimSource({ cpus: 2, exitRate: 200, seed: 2 }));
      const port = first.listening.port;
      const page = await open(`${first.url}/ui`);
      await atLeast(page, "#rows tr.exit", 5);
      await first.close();
      await stateIs(page, "disconnected");
      expect(await page.textContent("#conn-detail")).toMatch(/retry \d+ in/);
      const before = await count(page, "#count");
      const second = await listenNode(createServer({ source: createSimSource({ cpus: 2, exitRate: 200, seed: 3 }) }), {
        host: "127.0.0.1",
        port,
      });
      try {
        await stateIs(page, "live");
        expect(await page.textContent("#reconnects")).toBe("reconnects 1");
        await waitFor(page, (n) => Number(document.getElementById("count")?.title) > n, before + 20);
        // The new server numbered its events afresh: the gap is reported, never silent.
        expect(await page.textContent("#loss-reasons")).toContain("server restart");
        await page.close();
      } finally {
        await second.close();
      }
    }, 60_000);

    it(
      "stops at a request the server refuses as invalid (?cpus=0-), saying what to fix, without retrying",
      async () => {
        const bad = await startServer(createSimSource({ cpus: 2, exitRate: 0 }));
        try {
          const page = await open(`${bad.url}/ui?cpus=0-`);
          await stateIs(page, "invalid");
          expect(await page.textContent("#conn-detail")).toMatch(/cpulist "0-".*fix the page's address/);
          // The refused calls, as the server counts them.
          const refused = async () =>
            [...(await (await fetch(`${bad.url}/metrics`)).text()).matchAll(
              /^taskwire_rpc_requests_total\{[^}]*code="invalid_argument"[^}]*\} (\d+)$/gm,
            )].reduce((n, m) => n + Number(m[1]), 0);
          const before = await refused();
          expect(before).toBeGreaterThan(0);
          await sleep(3_500); // past the 3 s pause a retry would take
          expect(await state(page)).toBe("invalid");
          expect(await refused()).toBe(before);
          await page.close();
        } finally {
          errors.length = 0; // the refused requests' console errors belong to this test
          await bad.close();
        }
      },
      60_000,
    );

    it("asks for a token when auth is on, and keeps it out of the URL", async () => {
      const dir = mkdtempSync(join(tmpdir(), "tw-ui-auth-"));
      const token = newToken(), reader = newToken();
      writeFileSync(
        join(dir, "auth.json"),
        JSON.stringify({
          principals: { ops: { roles: ["read", "subscribe"] }, reader: { roles: ["read"] } },
          tokens: { [hashToken(token)]: "ops", [hashToken(reader)]: "reader" },
        }),
      );
      const authed = await startServer(createSimSource({ cpus: 2, exitRate: 200, seed: 6 }), {}, {
        authenticator: createAuthenticator({ tokenFile: join(dir, "auth.json") }),
      });
      try {
        const page = await open(`${authed.url}/ui`);
        await stateIs(page, "needs-token");
        expect(await page.isVisible("#auth")).toBe(true);
        await page.fill("#token", "not-a-token");
        await page.click("#auth button[type=submit]");
        await stateIs(page, "needs-token");
        await page.fill("#token", reader);
        await page.click("#auth button[type=submit]");
        await stateIs(page, "forbidden");
        expect(await page.textContent("#conn-detail")).toContain("subscribe");
        await page.fill("#token", token);
        await page.click("#auth button[type=submit]");
        await atLeast(page, "#rows tr.exit", 5);
        expect(await state(page)).toBe("live");
        expect(await page.isVisible("#auth")).toBe(false);
        expect(page.url()).toBe(`${authed.url}/ui`);
        expect(await page.evaluate(() => sessionStorage.getItem("taskwire-token"))).toBe(token);
        await page.reload(); // the tab keeps it
        await stateIs(page, "live");
        await page.click("#forget");
        await stateIs(page, "needs-token");
        expect(await page.evaluate(() => sessionStorage.getItem("taskwire-token"))).toBeNull();
        await page.close();
      } finally {
        await authed.close();
      }
    }, 60_000);

    it("serves its files with a strict CSP, content types and revalidation", async () => {
      const types: Record<string, string> = {
        "/ui": "text/html",
        "/ui/dashboard.js": "text/javascript",
        "/ui/taskwire-client.js": "text/javascript",
        "/ui/dashboard.css": "text/css",
        "/ui/uplot.css": "text/css",
      };
      for (const [path, type] of Object.entries(types)) {
        const res = await fetch(`${running.url}${path}`);
        expect(res.status, path).toBe(200);
        expect(res.headers.get("content-type"), path).toContain(type);
        expect(res.headers.get("content-security-policy"), path).toBe(UI_CSP);
        expect(res.headers.get("x-content-type-options")).toBe("nosniff");
        expect(res.headers.get("cache-control")).toBe("no-cache");
        const etag = res.headers.get("etag")!;
        expect((await fetch(`${running.url}${path}`, { headers: { "if-none-match": etag } })).status).toBe(304);
      }
      expect(UI_CSP).toContain("script-src 'self'");
      expect(await (await fetch(`${running.url}/ui`)).text()).not.toMatch(/<script>|\son\w+=/);
      expect((await fetch(`${running.url}/ui/../package.json`)).status).toBe(404);
    });

    describe.skipIf(noKernel !== undefined)(
      noKernel === undefined ? "on the real kernel" : `on the real kernel SKIPPED: ${noKernel}`,
      () => {
        it("shows a thread storm and a failed command", async () => {
          const { openNetlinkSource } = await import("../src/sources/netlink/netlink-source.ts");
          const kernel = await startServer(await openNetlinkSource());
          try {
            const page = await open(`${kernel.url}/ui`);
            await stateIs(page, "live");
            expect(await page.textContent("#source")).toBe("kernel");
            await page.waitForTimeout(300); // the reader's sockets are joined (synced) before the stream opens
            const storm = await runHelper(["storm", "400", "40"]);
            expect(storm.code).toBe(0);
            // comm is any local user's to choose: markup in it must show as text, never become elements.
            const failed = await runHelper(["exit", "<i>uifail</i>", "3"]);
            await waitFor(
              page,
              (n) =>
                [...document.querySelectorAll("#top tbody tr")].some((r) =>
                  r.children[0]?.textContent === "tw-helper" && Number(r.children[1]?.textContent) >= n
                ),
              400,
            );
            expect(await page.textContent("#top tbody tr:first-child td.comm")).toBe("tw-helper");
            await page.fill("#f-comm", "<i>uifail");
            await waitFor(page, () => document.querySelectorAll("#rows tr.exit").length === 1, null);
            expect(await column(page, "status")).toEqual(["exit 3"]);
            expect(await column(page, "pid")).toEqual([String(failed.pid)]);
            expect(await column(page, "comm")).toEqual(["<i>uifail</i>"]);
            expect(await page.$$eval("#rows i, #top i", (e) => e.length)).toBe(0);
            expect(await page.textContent("#lost")).toBe("0");
            await page.close();
          } finally {
            await kernel.close();
          }
        }, 60_000);
      },
    );
  },
);

describe("the dashboard's arithmetic", () => {
  it("drops a delay longer than the task lived (delayacct switched on mid-wait reports the uptime)", () => {
    expect(delayNs(25_422_000_000_000n, 55_000n)).toBe(0); // an ls of 55 ms with 7 h of block I/O "delay"
    expect(delayNs(43_700_000n, 55_900n)).toBe(43_700_000);
    expect(delayNs(undefined, undefined)).toBe(0);
  });

  it("parses cpulists and formats durations", () => {
    expect(parseCpulist("0-3,8")).toEqual([0, 1, 2, 3, 8]);
    expect(parseCpulist("3-1")).toEqual([]);
    expect([fmtUs(12), fmtUs(3400), fmtUs(1_250_000), fmtUs(125e6), fmtUs(3600e6 * 2 + 60e6 * 5)])
      .toEqual(["12 µs", "3.40 ms", "1.25 s", "2m05s", "2h05m"]);
  });
});

describe("CORS", () => {
  const preflight = (app: { fetch(r: Request): Response | Promise<Response> }, origin: string) =>
    app.fetch(
      new Request("http://taskwire/taskwire.v1.TaskStats/GetInfo", {
        method: "OPTIONS",
        headers: {
          origin,
          "access-control-request-method": "POST",
          "access-control-request-headers": "content-type,connect-protocol-version",
        },
      }),
    );

  it("allows the configured origins only", async () => {
    const server = createServer({
      source: createSimSource({ cpus: 2, exitRate: 0 }),
      corsOrigins: ["https://ops.example"],
    });
    try {
      const ok = await preflight(server, "https://ops.example");
      expect(ok.headers.get("access-control-allow-origin")).toBe("https://ops.example");
      expect(ok.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("connect-protocol-version");
      const other = await preflight(server, "https://evil.example");
      expect(other.headers.get("access-control-allow-origin")).toBeNull();
    } finally {
      await server.close();
    }
  });

  it("sends no CORS headers unless configured", async () => {
    const server = createServer({ source: createSimSource({ cpus: 2, exitRate: 0 }) });
    try {
      expect((await preflight(server, "https://ops.example")).headers.get("access-control-allow-origin")).toBeNull();
    } finally {
      await server.close();
    }
  });
});
