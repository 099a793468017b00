// Builds dist/web, what /ui serves (src/server/ui.ts):
// - taskwire-client.js: the SDK (clients/ts, fetch transport) as one ESM file
//   for browsers; the dashboard loads it, and so can any web app;
// - dashboard.js: the dashboard (src/server/ui/dashboard.ts) with uPlot
//   bundled in; it imports the SDK from taskwire-client.js, served next to it;
// - index.html, dashboard.css and uplot.css, copied.
import { copyFile, mkdir } from "node:fs/promises";
import { build } from "rolldown";

const at = (rel) => new URL(rel, import.meta.url).pathname;
const out = at("../dist/web/");

await build({
  input: at("../clients/ts/src/mod.ts"),
  platform: "browser",
  output: { file: `${out}taskwire-client.js`, format: "esm", minify: true },
  logLevel: "warn",
});

await build({
  input: at("../src/server/ui/dashboard.ts"),
  platform: "browser",
  external: ["@taskwire/client"],
  output: {
    file: `${out}dashboard.js`,
    format: "esm",
    minify: true,
    paths: { "@taskwire/client": "./taskwire-client.js" },
  },
  logLevel: "warn",
});

await mkdir(out, { recursive: true });
await Promise.all([
  copyFile(at("../src/server/ui/index.html"), `${out}index.html`),
  copyFile(at("../src/server/ui/dashboard.css"), `${out}dashboard.css`),
  copyFile(at("../node_modules/uplot/dist/uPlot.min.css"), `${out}uplot.css`),
]);
