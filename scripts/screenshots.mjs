// Takes the dashboard screenshots in docs/ (run by hand, not by the tests):
//   npm run build && node scripts/screenshots.mjs [sim|kernel]...
// Each shot starts `taskwire serve` on a free loopback port (from dist/ when
// built, else the sources under Bun), opens /ui in Debian's Chromium, lets
// real data flow for a while, and saves docs/dashboard-<name>.png. The kernel
// shot needs root (CAP_NET_ADMIN) and makes exits of its own: short
// commands, some failing or killed, and a thread storm, besides whatever the
// machine runs.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const root = new URL("..", import.meta.url).pathname;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer().once("error", reject).listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function serve(args) {
  const port = await freePort();
  const [cmd, pre] = existsSync(join(root, "dist/src/cli/main.js"))
    ? [process.execPath, [join(root, "bin/taskwire.js")]]
    : [join(root, "node_modules/.bin/bun"), [join(root, "src/cli/run.ts")]];
  const child = spawn(cmd, [...pre, "serve", "--port", String(port), "--log-level", "warning", ...args], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (await fetch(`${url}/healthz`).then((r) => r.ok, () => false)) return { url, stop: () => child.kill() };
    await sleep(100);
  }
  child.kill();
  throw new Error(`taskwire serve ${args.join(" ")} did not come up on ${url}`);
}

// Short-lived commands, some failing (exit 1, exit 124) or killed (SIGKILL, SIGSEGV with core), and a thread storm.
function startWorkload() {
  const dir = mkdtempSync(join(tmpdir(), "tw-shot-"));
  const helper = join(dir, "tw-helper");
  execFileSync("cc", ["-O2", "-pthread", "-o", helper, join(root, "test/native/tw-helper.c")]);
  const jobs = [
    ["sh", ["-c", "for i in 1 2 3 4 5 6 7 8; do ls -R /usr/share/doc >/dev/null; done"]],
    ["sh", ["-c", "gzip -c /usr/bin/chromium 2>/dev/null | wc -c >/dev/null"]],
    ["sh", ["-c", "grep -r nomatch /etc >/dev/null 2>&1"]],
    ["timeout", ["0.2", "sleep", "5"]],
    ["sh", ["-c", "kill -9 $$"]],
    [helper, ["exit", "backup-job", "3"]],
    [helper, ["storm", "300", "30"]],
    ["sh", ["-c", "find /usr/lib -name '*.so' | head -2000 | xargs -n 50 stat >/dev/null"]],
  ];
  let i = 0;
  const timer = setInterval(() => {
    const [cmd, args] = jobs[i++ % jobs.length];
    spawn(cmd, args, { stdio: "ignore" }).on("error", () => {});
  }, 150);
  return () => clearInterval(timer);
}

async function shoot(browser, name, url, ms) {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 }, deviceScaleFactor: 1 });
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById("conn")?.dataset.state === "live", undefined, {
    timeout: 15_000,
  });
  await sleep(ms);
  const out = join(root, `docs/dashboard-${name}.png`);
  await page.screenshot({ path: out });
  console.log(`${out}: ${await page.textContent("#conn")}, exits ${await page.textContent("#count")}`);
  await page.close();
}

const SHOTS = {
  // 8 simulated CPUs at 1500 exits/s into a 32-event queue: some loss, to show how it looks.
  sim: async (browser) => {
    const server = await serve(["--source", "sim", "--sim-cpus", "8", "--sim-exit-rate", "1500", "--sim-seed", "7"]);
    try {
      await shoot(browser, "sim", `${server.url}/ui?buffer=32`, 40_000);
    } finally {
      server.stop();
    }
  },
  kernel: async (browser) => {
    const server = await serve(["--source", "netlink", "--enable-delayacct"]);
    const stopWork = startWorkload();
    try {
      await shoot(browser, "kernel", `${server.url}/ui`, 40_000);
    } finally {
      stopWork();
      server.stop();
    }
  },
};

const names = process.argv.slice(2).length > 0 ? process.argv.slice(2) : Object.keys(SHOTS);
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox", "--disable-gpu"] });
try {
  for (const name of names) {
    if (!(name in SHOTS)) throw new TypeError(`no shot "${name}": choose from ${Object.keys(SHOTS).join(", ")}`);
    await SHOTS[name](browser);
  }
} finally {
  await browser.close();
}
