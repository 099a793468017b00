/**
 * The import graph, read with TypeScript's own import scanner
 * (ts.preProcessFile: every import, export-from and dynamic import, type-only
 * ones included): the listener core imports no generated code, no Connect,
 * no hono and no protobuf, directly or through anything it imports; and no
 * module cycle exists anywhere in the server or the SDK.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "..");

function sourcesUnder(dir: string): string[] {
  return readdirSync(join(root, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts") && !e.name.endsWith(".d.ts"))
    .map((e) => relative(root, join(e.parentPath, e.name)));
}

/** Each file's imports: project files (relative to the root) and bare specifiers as written. */
function importGraph(files: readonly string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const info = ts.preProcessFile(readFileSync(join(root, file), "utf8"), true, true);
    graph.set(
      file,
      info.importedFiles.map(({ fileName: spec }) =>
        spec.startsWith(".") ? relative(root, resolve(root, dirname(file), spec)) : spec
      ),
    );
  }
  return graph;
}

/** Every module `file` reaches, itself excluded. */
function reachable(graph: Map<string, string[]>, file: string): Set<string> {
  const seen = new Set<string>();
  const stack = [...(graph.get(file) ?? [])];
  while (stack.length > 0) {
    const next = stack.pop()!;
    if (seen.has(next)) continue;
    seen.add(next);
    stack.push(...(graph.get(next) ?? []));
  }
  return seen;
}

/** Strongly connected components of more than one module (or a module importing itself): the cycles. */
function cycles(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>(), low = new Map<string, number>(), onStack = new Set<string>();
  const stack: string[] = [], found: string[][] = [];
  let n = 0;
  const visit = (v: string): void => {
    index.set(v, n);
    low.set(v, n++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const scc: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(scc.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

const server = importGraph(sourcesUnder("src"));
const sdk = importGraph(sourcesUnder("clients/ts/src"));

describe("import graph", () => {
  const core = [...server.keys()].filter((f) => f.startsWith("src/core/"));

  it("the core exists and was scanned", () => {
    expect(core).toEqual(
      expect.arrayContaining(["src/core/listener.ts", "src/core/registry.ts", "src/core/retention.ts"]),
    );
  });

  it.each(core)("%s reaches no generated code, Connect, hono or protobuf", (file) => {
    const forbidden = [...reachable(server, file)].filter((m) =>
      m.includes("/gen/") || /^(@connectrpc|@bufbuild|hono|@hono)(\/|$)/.test(m)
    );
    expect(forbidden).toEqual([]);
  });

  it("the core imports only the core and the pure kernel helpers", () => {
    const outside = [...new Set(core.flatMap((f) => [...reachable(server, f)]))].filter((m) =>
      !m.startsWith("src/core/")
    );
    expect(outside.sort()).toEqual(["src/kernel/cpulist.ts", "src/kernel/listener-table.ts"]);
  });

  it("the server's modules form no cycle", () => {
    expect(cycles(server)).toEqual([]);
  });

  it("the SDK's modules form no cycle", () => {
    expect(cycles(sdk)).toEqual([]);
  });

  it("the cycle check finds a cycle when there is one", () => {
    const g = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["d"]], ["e", ["a"]]]);
    expect(cycles(g)).toEqual([["a", "b", "c"], ["d"]]);
  });
});
