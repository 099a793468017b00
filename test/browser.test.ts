/**
 * The SDK in a real browser: Debian's Chromium driven by playwright-core loads
 * the page taskwire serves at /ui, which subscribes to exits with the browser
 * bundle (connect-web) and shows them. CORS for other origins is configurable.
 */
import { existsSync } from "node:fs";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer } from "../src/server/server.ts";
import { createSimSource } from "../src/sources/sim/sim-source.ts";
import { type Running, startServer } from "./helpers.ts";

const CHROMIUM = "/usr/bin/chromium";
const missing = existsSync(CHROMIUM) ? undefined : `${CHROMIUM} (Debian package chromium)`;
if (missing !== undefined && process.env["TASKWIRE_REQUIRE_BROWSER"] === "1") {
  throw new Error(`TASKWIRE_REQUIRE_BROWSER=1 but ${missing} is missing`);
}

describe.skipIf(missing !== undefined)(
  missing === undefined ? "the browser page" : `the browser page SKIPPED: needs ${missing}`,
  () => {
    let running: Running;
    let browser: Browser;
    beforeAll(async () => {
      running = await startServer(createSimSource({ cpus: 8, exitRate: 300, seed: 4 }));
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
        ],
      });
    }, 60_000);
    afterAll(async () => {
      await browser?.close();
      await running?.close();
    });

    it("subscribes from the page and shows exits as they arrive", async () => {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(`${running.url}/ui?cpus=0-3`);
      await page.waitForFunction(() => document.querySelectorAll("tr.exit").length >= 10, undefined, {
        timeout: 20_000,
      });
      expect(await page.textContent("#status")).toBe("watching CPUs 0-3");
      const cpus = await page.$$eval("tr.exit", (rows) => rows.map((r) => Number(r.children[1]!.textContent)));
      expect(cpus.every((c) => c >= 0 && c <= 3)).toBe(true);
      const comms = await page.$$eval("tr.exit td.comm", (tds) => tds.map((t) => t.textContent));
      expect(comms.every((c) => (c ?? "").length > 0)).toBe(true);
      expect(Number(await page.textContent("#count"))).toBeGreaterThanOrEqual(10);
      expect(errors).toEqual([]);
      await page.close();
    }, 60_000);
  },
);

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
