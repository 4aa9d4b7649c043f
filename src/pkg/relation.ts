// Package relationship fields (Depends, Pre-Depends, Provides, Conflicts, Breaks, ...):
// comma-separated groups of "|"-separated alternatives, each "name[:arch] [(op version)] [[archs]] [<profiles>]".

import { BerthError } from "../common/errors.ts";
import type { RelationOp } from "./version.ts";

export interface Relation {
  name: string;
  /** The ":any", ":native" or ":amd64" qualifier, without the colon. */
  arch?: string;
  op?: RelationOp;
  version?: string;
  /** Architecture restriction list ([amd64 !i386]); only meaningful in source relations. */
  archRestriction?: string[];
}

/** Alternatives: satisfied when any one is. */
export type RelationGroup = Relation[];

const OPS: Record<string, RelationOp> = {
  "<<": "<<",
  "<=": "<=",
  "=": "=",
  ">=": ">=",
  ">>": ">>",
  // Obsolete forms dpkg still accepts, with their historical meaning.
  "<": "<=",
  ">": ">=",
};

const RELATION_RE =
  /^([a-z0-9][a-z0-9+.-]*)(?::([a-z0-9-]+))?\s*(?:\(\s*(<<|<=|>=|>>|<|>|=)\s*([^\s)]+)\s*\))?\s*(?:\[([^\]]*)\])?\s*(?:<[^>]*>\s*)*$/;

export function parseRelation(text: string, field = "relation"): Relation {
  const t = text.trim();
  const m = RELATION_RE.exec(t);
  if (!m) throw new BerthError(`malformed ${field} entry "${t}"`);
  const r: Relation = { name: m[1]! };
  if (m[2]) r.arch = m[2];
  if (m[3]) {
    r.op = OPS[m[3]]!;
    r.version = m[4]!;
  }
  if (m[5] !== undefined) r.archRestriction = m[5].trim().split(/\s+/).filter(Boolean);
  return r;
}

export function parseRelations(field: string | undefined, fieldName = "relation"): RelationGroup[] {
  if (!field) return [];
  const groups: RelationGroup[] = [];
  for (const part of field.split(",")) {
    const p = part.trim();
    if (!p) continue;
    groups.push(p.split("|").map((alt) => parseRelation(alt, fieldName)));
  }
  return groups;
}

export function formatRelation(r: Relation): string {
  return `${r.name}${r.arch ? `:${r.arch}` : ""}${r.op ? ` (${r.op} ${r.version})` : ""}`;
}

export function formatGroup(g: RelationGroup): string {
  return g.map(formatRelation).join(" | ");
}
