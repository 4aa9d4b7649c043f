// YAML documents checked against a TypeBox schema, with every problem reported as one UsageError that
// names the file, the line and the key ("images/nginx.yaml:12: unknown key "entrypont" under "run"
// (did you mean "entrypoint"?)"). The YAML library does the parsing and TypeBox the checking; this file
// only maps a JSON-pointer error back to the line it came from.

import type { TSchema } from "typebox";
import Value from "typebox/value";
import { type Document, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import { UsageError } from "./errors.ts";

export interface CheckedYaml<T> {
  value: T;
  /** The line of the value at a JSON pointer ("/packages/2"), for messages about problems found later. */
  lineAt(pointer: string): number | undefined;
  /** "file:line" of a pointer (or just "file"). */
  where(pointer: string): string;
}

function lineOf(lc: LineCounter, node: Node | undefined | null): number | undefined {
  const start = node?.range?.[0];
  return start === undefined ? undefined : lc.linePos(start).line;
}

/** The YAML node at a JSON-pointer path; for an unknown key, the key's own node. */
function nodeAt(root: Node | null, pointer: string, keyNode = false): Node | undefined {
  const parts = pointer
    .split("/")
    .slice(1)
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
  let node: Node | null | undefined = root;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (isMap(node)) {
      const pair = node.items.find((it) => isScalar(it.key) && String(it.key.value) === part);
      if (!pair) return node;
      if (keyNode && i === parts.length - 1) return pair.key as Node;
      node = pair.value as Node | null;
    } else if (isSeq(node)) {
      node = node.items[Number(part)] as Node | undefined;
    } else return node ?? undefined;
  }
  return node ?? undefined;
}

/** A close option to a misspelt name (edit distance at most 3), as " (did you mean "x"?)". */
export function suggest(name: string, options: string[]): string {
  const dist = (a: string, b: string) => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0]![j] = j;
    for (let i = 1; i <= a.length; i++)
      for (let j = 1; j <= b.length; j++)
        d[i]![j] = Math.min(
          d[i - 1]![j]! + 1,
          d[i]![j - 1]! + 1,
          d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
        );
    return d[a.length]![b.length]!;
  };
  const best = options.map((o) => [o, dist(name, o)] as const).sort((x, y) => x[1] - y[1])[0];
  return best && best[1] <= 3 ? ` (did you mean "${best[0]}"?)` : "";
}

/** The sub-schema at a JSON-pointer path of a value. */
function schemaAt(schema: TSchema, pointer: string): unknown {
  let s: unknown = schema;
  for (const part of pointer.split("/").slice(1)) {
    const o = s as {
      properties?: Record<string, unknown>;
      items?: unknown;
      patternProperties?: Record<string, unknown>;
    };
    if (o.properties?.[part]) s = o.properties[part];
    else if (o.items) s = o.items;
    else if (o.patternProperties) s = Object.values(o.patternProperties)[0];
    else return undefined;
  }
  return s;
}

/**
 * Parses YAML text and checks it against `schema`; the first problem becomes a one-line UsageError.
 * `what` is the document in "… is a YAML mapping"; `root` names it in a problem with the document as a
 * whole (a missing required key), where a profile says "profile:" rather than "a profile:".
 */
export function parseYamlChecked<T>(
  schema: TSchema,
  text: string,
  source: string,
  what: string,
  root = what,
): CheckedYaml<T> {
  const lc = new LineCounter();
  const doc: Document = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    throw new UsageError(`${source}:${lc.linePos(e.pos[0]).line}: ${e.message.split("\n")[0]}`);
  }
  const raw = doc.toJS() as unknown;
  if (raw === null || typeof raw !== "object" || Array.isArray(raw))
    throw new UsageError(`${source}: ${what} is a YAML mapping`);
  const errors = [...Value.Errors(schema, raw)];
  // The most specific error: an unknown key, else the first one at the deepest path.
  const unknown = errors.find((e) => e.message === "schema is false" || /additional/i.test(e.message));
  if (unknown) {
    const extra = (unknown as { params?: { additionalProperties?: string[] } }).params
      ?.additionalProperties?.[0];
    const path = extra ? `${unknown.instancePath}/${extra}` : unknown.instancePath;
    const key = path.split("/").pop()!;
    const parent = path.slice(0, path.lastIndexOf("/"));
    const line = lineOf(lc, nodeAt(doc.contents, path, true));
    const allowed = Object.keys(
      (schemaAt(schema, parent) as { properties?: Record<string, unknown> } | undefined)?.properties ?? {},
    );
    throw new UsageError(
      `${source}:${line ?? "?"}: unknown key "${key}"${parent ? ` under "${parent.slice(1).replace(/\//g, ".")}"` : ""}${suggest(key, allowed)}`,
    );
  }
  if (errors.length) {
    const e = [...errors].sort(
      (a, b) => b.instancePath.split("/").length - a.instancePath.split("/").length,
    )[0]!;
    const line = lineOf(lc, nodeAt(doc.contents, e.instancePath));
    const where = e.instancePath ? e.instancePath.slice(1).replace(/\//g, ".") : root;
    const anyOf = (schemaAt(schema, e.instancePath) as { anyOf?: { const?: unknown }[] } | undefined)?.anyOf;
    const message = anyOf?.every((a) => a.const !== undefined)
      ? `must be one of: ${anyOf.map((a) => String(a.const)).join(", ")}`
      : e.message;
    throw new UsageError(`${source}:${line ?? "?"}: ${where}: ${message}`);
  }
  const lineAt = (pointer: string) => lineOf(lc, nodeAt(doc.contents, pointer));
  return {
    value: raw as T,
    lineAt,
    where: (pointer: string) => {
      const l = lineAt(pointer);
      return l ? `${source}:${l}` : source;
    },
  };
}
