// The layering in docs/architecture.md holds for the code: every import between parts under src/ is one
// the table allows, common imports no part, no part imports the CLI, and the part graph has no cycle.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { test } from "node:test";
import { ROOT } from "./helpers.ts";

const SRC = join(ROOT, "src");

/** The table between the layering markers: part -> the parts it may import. */
export function parseLayering(markdown: string): Map<string, Set<string>> {
  const m = /<!-- layering:begin -->([\s\S]*?)<!-- layering:end -->/.exec(markdown);
  if (!m) throw new Error("docs/architecture.md has no layering table between its markers");
  const rules = new Map<string, Set<string>>();
  for (const line of m[1]!.split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    const part = /^`([a-z0-9-]+)`$/.exec(cells[1] ?? "")?.[1];
    if (!part) continue;
    const may = cells[3] ?? "";
    rules.set(part, new Set(may === "—" ? [] : may.split(",").map((s) => s.trim())));
  }
  return rules;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (/\.(ts|tsx|mts)$/.test(e.name)) out.push(p);
  }
  return out;
}

/** Relative import specifiers of a file: static imports, re-exports and dynamic import() calls. */
export function importsOf(text: string): string[] {
  const specs: string[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)["'](\.{1,2}\/[^"']+)["']/gm;
  for (const m of text.matchAll(re)) specs.push(m[1]!);
  return specs;
}

const partOf = (file: string) => relative(SRC, file).split(sep)[0]!;

/** Part -> part -> the first file that makes the edge. */
function partGraph(): Map<string, Map<string, string>> {
  const edges = new Map<string, Map<string, string>>();
  for (const file of sourceFiles(SRC)) {
    const from = partOf(file);
    for (const spec of importsOf(readFileSync(file, "utf8"))) {
      const target = resolve(dirname(file), spec);
      if (!target.startsWith(SRC + sep)) continue;
      const to = partOf(target);
      if (to === from) continue;
      if (!edges.has(from)) edges.set(from, new Map());
      if (!edges.get(from)!.has(to)) edges.get(from)!.set(to, relative(ROOT, file));
    }
  }
  return edges;
}

const rules = parseLayering(readFileSync(join(ROOT, "docs/architecture.md"), "utf8"));
const graph = partGraph();
const parts = readdirSync(SRC, { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => e.name);

test("every folder under src/ is a part with a row in the layering table", () => {
  const missing = parts.filter((p) => !rules.has(p));
  assert.deepEqual(missing, [], `add rows to docs/architecture.md for: ${missing.join(", ")}`);
  assert.ok(parts.includes("common") && parts.includes("cli"));
});

test("every import between parts is one the table allows", () => {
  const broken: string[] = [];
  for (const [from, tos] of graph) {
    const allowed = rules.get(from);
    if (!allowed || allowed.has("every part")) continue;
    for (const [to, where] of tos) if (!allowed.has(to)) broken.push(`${from} imports ${to} (${where})`);
  }
  assert.deepEqual(broken, []);
});

test("common imports no part and no part imports the CLI", () => {
  assert.deepEqual([...(graph.get("common")?.keys() ?? [])], []);
  const intoCli = [...graph]
    .filter(([from, tos]) => from !== "cli" && tos.has("cli"))
    .map(([f, t]) => `${f} (${t.get("cli")})`);
  assert.deepEqual(intoCli, []);
});

test("the part graph and the table have no cycle", () => {
  for (const [name, g] of [
    ["imports", new Map([...graph].map(([k, v]) => [k, new Set(v.keys())]))],
    ["table", new Map([...rules].map(([k, v]) => [k, new Set([...v].filter((x) => x !== "every part"))]))],
  ] as const) {
    const state = new Map<string, "open" | "done">();
    const cycles: string[] = [];
    const visit = (n: string, path: string[]) => {
      if (state.get(n) === "done") return;
      if (state.get(n) === "open") {
        cycles.push([...path.slice(path.indexOf(n)), n].join(" -> "));
        return;
      }
      state.set(n, "open");
      for (const t of g.get(n) ?? []) visit(t, [...path, n]);
      state.set(n, "done");
    };
    for (const n of g.keys()) visit(n, []);
    assert.deepEqual(cycles, [], `cycles in the ${name}`);
  }
});

test("the checker sees imports, re-exports and dynamic imports, and parses the table", () => {
  assert.deepEqual(
    importsOf(
      `import { a } from "../x/a.ts";\nexport { b } from "./b.ts";\nconst c = await import("../../y/c.ts");\nimport "./side.ts";\nimport x from "node:fs";`,
    ),
    ["../x/a.ts", "./b.ts", "../../y/c.ts", "./side.ts"],
  );
  const t = parseLayering(
    "<!-- layering:begin -->\n| part | what | may import |\n| --- | --- | --- |\n| `common` | x | — |\n| `pkg` | y | common |\n<!-- layering:end -->",
  );
  assert.deepEqual([...t.get("pkg")!], ["common"]);
  assert.deepEqual([...t.get("common")!], []);
});
