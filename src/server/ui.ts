/**
 * The live dashboard at /ui. Its files are built by `npm run build`
 * (scripts/build-web.mjs) into dist/web: the page, its stylesheet, its script
 * (which bundles uPlot) and the SDK's browser bundle, which the script
 * imports and any web app may load too. They are served from a fixed list
 * (no path from the request reaches the file system), read once and kept,
 * with an ETag so a reload costs a 304. The read is synchronous (about
 * 215 KB once per process): Bun 1.4's server closes a connection, unanswered,
 * when a pipelined HTTP/1.1 request arrives while the response ahead of it
 * waits on I/O (uWS "denying async pipelining"), and an answer made in the
 * same turn never waits. The page runs no inline script and
 * puts every server string in with textContent, so /ui carries a strict
 * Content-Security-Policy: scripts, styles and connections to this origin
 * only.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Env, Hono } from "hono";

// From dist/src/server (Node, built) or src/server (Deno, Bun, tests): both reach dist/web.
const WEB_DIRS = ["../../web/", "../../dist/web/"];

const JS = "text/javascript; charset=utf-8";
const CSS = "text/css; charset=utf-8";

/** What /ui serves: the URL path, the file in dist/web, its content type. */
const FILES: Record<string, { readonly file: string; readonly type: string }> = {
  "/ui": { file: "index.html", type: "text/html; charset=utf-8" },
  "/ui/dashboard.js": { file: "dashboard.js", type: JS },
  "/ui/dashboard.css": { file: "dashboard.css", type: CSS },
  "/ui/uplot.css": { file: "uplot.css", type: CSS },
  "/ui/taskwire-client.js": { file: "taskwire-client.js", type: JS },
};

/** The Content-Security-Policy of /ui and its files. */
export const UI_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const SECURITY_HEADERS = {
  "content-security-policy": UI_CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
};

interface Asset {
  readonly body: Uint8Array<ArrayBuffer>;
  readonly etag: string;
}

const _cache = new Map<string, Asset>();

// Found files are kept for the process's life (a rebuild needs a restart); a missing one is looked for again.
function _asset(file: string): Asset | undefined {
  const kept = _cache.get(file);
  if (kept !== undefined) return kept;
  for (const dir of WEB_DIRS) {
    try {
      const body = new Uint8Array(readFileSync(new URL(dir + file, import.meta.url)));
      const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`;
      const asset = { body, etag };
      _cache.set(file, asset);
      return asset;
    } catch {
      // try the next place
    }
  }
  return undefined;
}

/** Adds /ui and its files to the app. */
export function addUi<E extends Env>(app: Hono<E>): void {
  app.get("/ui/", (c) => c.redirect("/ui", 301));
  for (const [path, { file, type }] of Object.entries(FILES)) {
    app.get(path, (c) => {
      const asset = _asset(file);
      if (asset === undefined) {
        return c.text(`the dashboard's ${file} is missing from dist/web: run \`npm run build\``, 404);
      }
      // no-cache: the browser keeps the file but asks each time; an unchanged build answers 304.
      const headers = { ...SECURITY_HEADERS, etag: asset.etag, "cache-control": "no-cache" };
      if (c.req.header("if-none-match") === asset.etag) return c.body(null, 304, headers);
      return c.body(asset.body, 200, { ...headers, "content-type": type });
    });
  }
}
