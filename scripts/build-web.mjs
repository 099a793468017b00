// Bundles the SDK (clients/ts, fetch transport) as one ESM file for browsers:
// the page at /ui loads it, and so can any web app.
import { build } from "rolldown";

await build({
  input: new URL("../clients/ts/src/mod.ts", import.meta.url).pathname,
  platform: "browser",
  output: { file: new URL("../dist/web/taskwire-client.js", import.meta.url).pathname, format: "esm", minify: true },
  logLevel: "warn",
});
