// `npm start` and `bun run start` share package.json's start script; this
// launcher makes each runtime serve as the README says:
// - npm (Node): the compiled CLI, `taskwire serve` (--source auto: the real
//   kernel, or an exit naming what is missing). `prestart` builds it first.
// - bun: Bun itself runs the TypeScript sources with the simulated kernel.
//   `bun run` executes scripts with the `node` found on PATH, so without this
//   the Bun user would silently get Node. Bun also runs `prestart`; the build
//   is skipped there because Bun needs no compiled output.
// Arguments after `--` pass through (`bun run start -- --port 0`).
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, readlinkSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const isBun = (path) => /(^|\/)bun(\.exe)?$/.test(path ?? "");

/** The bun binary that ran this script, if one did. Bun sets npm_execpath and the
 *  user agent only when they are not inherited already (a `bun run` started from
 *  an npm script keeps npm's), so on Linux the parent process decides first. */
function findBun() {
  let pid = process.ppid;
  for (let hop = 0; hop < 2 && pid > 1; hop++) {
    try {
      const exe = readlinkSync(`/proc/${pid}/exe`);
      if (isBun(exe)) return exe;
      pid = Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ")[1]);
    } catch {
      break;
    }
  }
  if (isBun(process.env.npm_execpath)) return process.env.npm_execpath;
  return (process.env.npm_config_user_agent ?? "").startsWith("bun/") ? "bun" : undefined;
}

const bun = findBun();
const underBun = bun !== undefined;
const args = process.argv.slice(2);

if (process.env.npm_lifecycle_event === "prestart") {
  if (!underBun) process.exitCode = spawnSync("npm", ["run", "build"], { cwd: root, stdio: "inherit" }).status ?? 1;
} else if (underBun) {
  const child = spawn(bun, ["src/cli/run.ts", "serve", "--source", "sim", ...args], { cwd: root, stdio: "inherit" });
  // Ctrl-C reaches the whole process group, the child included: only keep
  // this launcher alive for the child's clean shutdown. SIGTERM/SIGHUP are
  // usually sent to one pid, so they are passed on.
  process.on("SIGINT", () => {});
  for (const sig of ["SIGTERM", "SIGHUP"]) process.on(sig, () => child.kill(sig));
  child.on("exit", (code, signal) => {
    process.exitCode = code ?? (signal ? 128 : 1);
  });
} else {
  const { main } = await import("../dist/src/cli/main.js");
  process.exitCode = await main(["serve", ...args]);
}
