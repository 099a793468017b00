/**
 * The process's own series (process_*, nodejs_*), kept apart from each
 * server's: they describe the process, not a server, and prom-client's
 * collectors for them start a monitorEventLoopDelay histogram and a GC
 * PerformanceObserver that are never released. Made per server, every
 * createServer would leak one of each (and every GC would call every
 * server's observer); made once, with the first server that has metrics,
 * there is one per process.
 */
import { collectDefaultMetrics, type Counter, Registry } from "prom-client";
import { logText, taskwireLogger } from "../log/logger.ts";

// nodejs_active_{handles,requests,resources}_total are gauges named like
// counters (`promtool check metrics` flags them), and their unsuffixed
// by-type breakdowns say the same; both are dropped.
const DROPPED = [
  "nodejs_active_handles",
  "nodejs_active_handles_total",
  "nodejs_active_requests",
  "nodejs_active_requests_total",
  "nodejs_active_resources",
  "nodejs_active_resources_total",
];

let shared: Registry | undefined;

// prom-client's CPU counters count from their creation; the convention (and
// every other client's) is the process's whole CPU time, so they start at
// what the process had used by then.
function seedCpu(registry: Registry, used: NodeJS.CpuUsage): void {
  const seed = (name: string, micros: number) =>
    (registry.getSingleMetric(name) as Counter | undefined)?.inc(micros / 1e6);
  seed("process_cpu_user_seconds_total", used.user);
  seed("process_cpu_system_seconds_total", used.system);
  seed("process_cpu_seconds_total", used.user + used.system);
}

/**
 * The process-wide registry of process_* and nodejs_* series, made on first
 * use. Unprefixed, as every Prometheus client library names them, so stock
 * dashboards and alerts apply; a scrape's job and instance labels say it is
 * taskwire. Empty where the runtime lacks what the collectors read.
 */
export function processRegistry(): Registry {
  if (shared !== undefined) return shared;
  const registry = new Registry();
  try {
    const used = process.cpuUsage();
    collectDefaultMetrics({ register: registry });
    for (const name of DROPPED) registry.removeSingleMetric(name);
    seedCpu(registry, used);
  } catch (err) {
    registry.clear();
    logText(taskwireLogger(), "warning", "process metrics unavailable on this runtime", {
      error: (err as Error).message,
    });
  }
  shared = registry;
  return registry;
}
