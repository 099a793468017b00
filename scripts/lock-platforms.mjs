// The npm registry this project is built against does not serve every
// platform's binary package (buf's and deno's for macOS and Windows, say),
// so `npm install` leaves them out of package-lock.json and `npm ci` then
// refuses the lock. This adds an entry for each missing optional platform
// package, with the os/cpu its name states, so npm ci skips it where it does
// not apply and fetches it where it does. Run it after any `npm install`
// that rewrites the lock (npm run lock).
import { readFileSync, writeFileSync } from "node:fs";

const path = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(path, "utf8"));
const OS = [["darwin", "darwin"], ["linux", "linux"], ["win32", "win32"], ["windows", "win32"], ["freebsd", "freebsd"]];
const CPU = [["aarch64", "arm64"], ["arm64", "arm64"], ["x86_64", "x64"], ["x64", "x64"], ["armv7", "arm"], [
  "ia32",
  "ia32",
]];

function platformOf(name) {
  const os = OS.find(([k]) => name.includes(k))?.[1];
  const cpu = CPU.find(([k]) => name.includes(k))?.[1];
  return os && cpu ? { os, cpu } : undefined;
}

let added = 0;
for (const [key, pkg] of Object.entries(lock.packages)) {
  for (const [dep, version] of Object.entries(pkg.optionalDependencies ?? {})) {
    const depKey = `node_modules/${dep}`;
    if (lock.packages[depKey] || lock.packages[`${key}/${depKey}`]) continue;
    const p = platformOf(dep);
    if (!p) {
      console.error(
        `lock-platforms: ${dep} (optional dependency of ${
          key || "the root"
        }) is missing and names no platform; not stubbing it`,
      );
      process.exitCode = 1;
      continue;
    }
    lock.packages[depKey] = { version, cpu: [p.cpu], dev: pkg.dev ?? false, optional: true, os: [p.os] };
    added++;
  }
}
lock.packages = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b))),
);
writeFileSync(path, JSON.stringify(lock, null, 2) + "\n");
console.log(`lock-platforms: added ${added} entries`);
