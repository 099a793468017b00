// The npm registry this project is built against does not serve buf's
// binaries for other platforms, so `npm install` leaves them out of
// package-lock.json and `npm ci` then refuses the lock. This adds their
// entries (optional, with os/cpu) so npm ci skips them here and fetches them
// where they apply. Run after any `npm install` that rewrites the lock.
import { readFileSync, writeFileSync } from "node:fs";

const path = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(path, "utf8"));
const buf = lock.packages["node_modules/@bufbuild/buf"];
const platforms = { "darwin-arm64": ["darwin", "arm64"], "darwin-x64": ["darwin", "x64"], "linux-armv7": ["linux", "arm"],
  "win32-arm64": ["win32", "arm64"], "win32-x64": ["win32", "x64"], "linux-aarch64": ["linux", "arm64"], "linux-x64": ["linux", "x64"] };
let added = 0;
for (const [name, [os, cpu]] of Object.entries(platforms)) {
  const key = `node_modules/@bufbuild/buf-${name}`;
  if (lock.packages[key]) continue;
  lock.packages[key] = { version: buf.version, cpu: [cpu], dev: true, license: "Apache-2.0", optional: true, os: [os], engines: { node: ">=12" } };
  added++;
}
lock.packages = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b))));
writeFileSync(path, JSON.stringify(lock, null, 2) + "\n");
console.log(`lock-platforms: added ${added} entries`);
