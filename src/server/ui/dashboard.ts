/**
 * The live dashboard at /ui (bundled by scripts/build-web.mjs into
 * dist/web/dashboard.js; the SDK comes from the browser bundle served next to
 * it). It wires the connection to the panels: counters, the rate chart, the
 * top-N panel and the live table. URL parameters: `cpus` (a cpulist, default
 * all) and `buffer` (the listener's queue size, default the server's).
 */
import type { ExitEvent, GetInfoResponse, HostIdentity, Lost } from "@taskwire/client";
import { chartPlaceholder, createRateChart } from "./_chart.ts";
import { type ConnState, createConnection } from "./_connection.ts";
import { byId, dashboardParams, el, fmtCount, lossText, parseCpulist } from "./_format.ts";
import { createLiveTable } from "./_table.ts";
import { createTopPanel, TOP_WINDOW_S } from "./_top.ts";

const TOKEN_KEY = "taskwire-token";

const { cpumask, buffer } = dashboardParams(location.search);

const chart = createRateChart(byId("chart"));
chartPlaceholder(byId("chart"));
const top = createTopPanel(byId<HTMLTableElement>("top"));
const table = createLiveTable(byId<HTMLTableSectionElement>("rows"), {
  comm: byId<HTMLInputElement>("f-comm"),
  uid: byId<HTMLInputElement>("f-uid"),
  nonzero: byId<HTMLInputElement>("f-nonzero"),
  pause: byId<HTMLButtonElement>("pause"),
  status: byId("shown"),
});
byId("top-window").textContent = String(TOP_WINDOW_S);

const totals = { exits: 0, lost: 0, unknownLosses: 0, byReason: new Map<number, number>() };
let cpusShown = "";

function onEvent(ev: ExitEvent): void {
  const now = Date.now();
  if (ev.event.case === "exit") {
    totals.exits++;
    chart.exit(ev.cpu);
    top.add(ev.event.value, now);
  } else if (ev.event.case === "lost") onLost(ev.event.value);
  table.add(ev, now);
}

function onLost(lost: Lost): void {
  const n = Number(lost.count);
  totals.lost += n;
  if (lost.countUnknown) totals.unknownLosses++;
  totals.byReason.set(lost.reason, (totals.byReason.get(lost.reason) ?? 0) + (lost.countUnknown ? 1 : n));
  chart.lost(n);
}

function onState(state: ConnState, detail: string): void {
  const conn = byId("conn");
  conn.dataset["state"] = state;
  conn.textContent = state === "needs-token" ? "needs a token" : state;
  conn.title = detail;
  byId("conn-detail").textContent = detail;
  byId("auth").hidden = state !== "needs-token" && state !== "forbidden";
  document.title = `taskwire · ${state}`;
}

function onInfo(info: GetInfoResponse): void {
  showSource(info.source);
  if (info.host !== undefined) showHost(info.host);
  byId("kernel").textContent = `${info.kernelRelease} · taskstats v${info.taskstatsVersion}` +
    (info.delayacct ? "" : " · delayacct off (I/O and memory delays are zero)");
  const discards = Number(info.sourceDiscards), budget = Number(info.memoryBudgetDrops);
  byId("server-drops").textContent = `server-wide: ${fmtCount(Number(info.kernelDrops))} dropped by the kernel, ` +
    `${fmtCount(Number(info.subscriberDrops))} by full queues` +
    (budget > 0 ? `, ${fmtCount(budget)} by the full memory budget` : "") +
    (discards > 0 ? `, ${fmtCount(discards)} the server could not pass on (see its log)` : "");
}

function showSource(source: string): void {
  const badge = byId("source");
  badge.dataset["source"] = source;
  badge.textContent = source === "netlink" ? "kernel" : source === "sim" ? "sim" : source || "?";
  badge.title = source === "sim" ? "simulated kernel: these exits are not real" : "the real kernel (netlink taskstats)";
}

function showHost(host: HostIdentity): void {
  if (host.source !== "") showSource(host.source);
  byId("host").textContent = host.hostname || "(no hostname)";
  byId("host").title = `boot_id ${host.bootId}` + (host.machineId === "" ? "" : `, machine-id ${host.machineId}`);
}

function onSubscribed(host: HostIdentity | undefined, mask: string, reconnects: number): void {
  if (host !== undefined) showHost(host);
  byId("reconnects").textContent = `reconnects ${reconnects}`;
  byId("reconnects").classList.toggle("warn", reconnects > 0);
  if (mask !== cpusShown) {
    cpusShown = mask;
    chart.setCpus(parseCpulist(mask));
  }
}

function everySecond(): void {
  const { exits, lost } = chart.tick(Date.now());
  byId("rate").textContent = fmtCount(exits);
  byId("lost-rate").textContent = fmtCount(lost);
  top.render(Date.now());
}

function everyQuarter(): void {
  byId("count").textContent = fmtCount(totals.exits);
  byId("count").title = String(totals.exits);
  byId("lost").textContent = fmtCount(totals.lost) + (totals.unknownLosses > 0 ? "+?" : "");
  byId("lost").title = String(totals.lost);
  document.body.classList.toggle("losing", totals.lost > 0 || totals.unknownLosses > 0);
  const reasons = [...totals.byReason].map(([r, n]) => el("li", "", `${lossText(r)}: ${fmtCount(n)}`));
  byId("loss-reasons").replaceChildren(...(reasons.length > 0 ? reasons : [el("li", "muted", "no loss")]));
  table.render();
}

const connection = createConnection({ cpumask, buffer }, {
  state: onState,
  info: onInfo,
  subscribed: onSubscribed,
  event: onEvent,
});

function useToken(token: string): void {
  if (token === "") sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token); // this tab only; never in the URL
  byId("forget").hidden = token === "";
  connection.start(token);
}

byId<HTMLFormElement>("auth").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = byId<HTMLInputElement>("token");
  const token = input.value.trim();
  input.value = "";
  useToken(token);
});
byId("forget").addEventListener("click", () => useToken(""));

setInterval(everySecond, 1000);
setInterval(everyQuarter, 250);
useToken(sessionStorage.getItem(TOKEN_KEY) ?? "");
