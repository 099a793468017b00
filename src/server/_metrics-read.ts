/**
 * Series whose values something else keeps (the registry, the source, the
 * fleet publisher): read when a scrape asks, never kept up to date here.
 */
import { Counter, Gauge, type Registry as PromRegistry } from "prom-client";

/** A gauge set from `read()` at scrape time. */
export function gaugeFrom(registry: PromRegistry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

// A counter whose total something else keeps: copied in at scrape time (undefined: not known yet, left out).
export function counterFrom(
  registry: PromRegistry,
  name: string,
  help: string,
  o: { labels?: Record<string, string>; read: () => number | undefined },
): void {
  const labels = o.labels ?? {};
  new Counter({
    name,
    help,
    labelNames: Object.keys(labels),
    registers: [registry],
    collect() {
      const v = o.read();
      this.reset();
      if (v !== undefined) this.inc(labels, v);
    },
  });
}
