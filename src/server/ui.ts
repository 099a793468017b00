/**
 * A small live page at /ui: the browser SDK (dist/web, built by `npm run
 * build`) subscribes to exits and shows them as they come.
 */
import { readFile } from "node:fs/promises";
import type { Env, Hono } from "hono";

const BUNDLE_CANDIDATES = ["../../web/taskwire-client.js", "../../dist/web/taskwire-client.js"]; // from dist/src/server, or src/server

async function bundle(): Promise<string | undefined> {
  for (const rel of BUNDLE_CANDIDATES) {
    try {
      return await readFile(new URL(rel, import.meta.url), "utf8");
    } catch {
      // try the next place
    }
  }
  return undefined;
}

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>taskwire: exits</title>
<style>body{font:14px system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}td,th{padding:2px 10px;text-align:right}
th{border-bottom:1px solid #999}td.comm{text-align:left;font-family:monospace}.lost{color:#b00}#status{color:#555}</style></head>
<body><h1>taskwire: task exits</h1>
<form id="f">CPUs <input id="cpus" value="all" size="12"> token <input id="token" type="password" size="24" placeholder="(if the server asks for one)" autocomplete="off"> <button>watch</button> <span id="status">connecting…</span></form>
<p>exits: <b id="count">0</b> · lost: <b id="lost">0</b></p>
<table><thead><tr><th>seq</th><th>cpu</th><th>pid</th><th>tgid</th><th>comm</th><th>exit</th><th>utime µs</th><th>stime µs</th></tr></thead><tbody id="rows"></tbody></table>
<script type="module">
import { createTaskwireClient, UnauthenticatedError, watchExits } from "/ui/taskwire-client.js";
const $ = (id) => document.getElementById(id);
// The token lives in this tab's session storage only: never in the URL, never sent anywhere but this origin.
$("token").value = sessionStorage.getItem("taskwire-token") ?? "";
let ctl;
async function watch(cpumask) {
  ctl?.abort(); ctl = new AbortController();
  const token = $("token").value.trim();
  if (token) sessionStorage.setItem("taskwire-token", token); else sessionStorage.removeItem("taskwire-token");
  let client;
  try { client = createTaskwireClient(location.origin, token ? { token } : {}); }
  catch (e) { $("status").textContent = "error: " + e.message; return; }
  $("rows").textContent = ""; let count = 0, lost = 0n;
  try {
    for await (const ev of watchExits(client, { cpumask, signal: ctl.signal, onSubscribed: (s) => ($("status").textContent = "watching CPUs " + s.cpumask) })) {
      const tr = document.createElement("tr");
      if (ev.event.case === "lost") { lost += ev.event.value.count; $("lost").textContent = lost; tr.className = "lost"; tr.innerHTML = "<td>" + ev.seq + "</td><td colspan=7>lost " + ev.event.value.count + "</td>"; }
      else { const x = ev.event.value, s = x.pidStats ?? {}; $("count").textContent = ++count;
        tr.className = "exit";
        for (const v of [ev.seq, ev.cpu, x.pid, x.tgid, s.acComm, s.acExitcode, s.acUtime, s.acStime]) { const td = document.createElement("td"); td.textContent = String(v ?? ""); tr.append(td); }
        tr.children[4].className = "comm"; }
      $("rows").prepend(tr); while ($("rows").children.length > 200) $("rows").lastChild.remove();
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
    $("status").textContent = e instanceof UnauthenticatedError ? "this server needs a token: enter it above and press watch" : "error: " + e.message;
  }
}
$("f").onsubmit = (e) => { e.preventDefault(); watch($("cpus").value); };
const q = new URLSearchParams(location.search).get("cpus"); if (q) $("cpus").value = q;
watch($("cpus").value);
</script></body></html>`;

/** Adds /ui and its script to the app. */
export function addUi<E extends Env>(app: Hono<E>): void {
  app.get("/ui", (c) => c.html(PAGE));
  app.get("/ui/taskwire-client.js", async (c) => {
    const js = await bundle();
    if (js === undefined) return c.text("the browser SDK bundle is missing; run `npm run build`", 404);
    return c.body(js, 200, { "content-type": "text/javascript; charset=utf-8", "cache-control": "no-cache" });
  });
}
