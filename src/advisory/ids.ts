// Stable BSA numbering: the same fix (source package and fixed version, for the same release line)
// keeps its id on every run, and an id is never given to anything else, even after its advisory is
// withdrawn. The registry is a small JSON file, written atomically.

import { readFileSync } from "node:fs";
import { BerthError } from "../common/errors.ts";
import { writeFileAtomic } from "../common/fsutil.ts";

export interface IdRegistry {
  /** Highest number given out, per year. */
  last: Record<string, number>;
  /** Fix key -> id. */
  assigned: Record<string, string>;
}

export function readRegistry(path: string): IdRegistry {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return { last: {}, assigned: {} };
  }
  try {
    const r = JSON.parse(text) as IdRegistry;
    if (typeof r.last !== "object" || typeof r.assigned !== "object") throw new Error("missing fields");
    return r;
  } catch (e) {
    throw new BerthError(`${path}: not a BSA id registry (${(e as Error).message.split("\n")[0]})`);
  }
}

export const fixKey = (source: string, version: string, codename: string) =>
  `${codename}/${source}/${version}`;

/** The id of a fix: its old one, or the next number of `year`. Mutates the registry. Pure otherwise. */
export function assignId(reg: IdRegistry, key: string, year: number): string {
  const have = reg.assigned[key];
  if (have) return have;
  const n = (reg.last[String(year)] ?? 0) + 1;
  reg.last[String(year)] = n;
  const id = `BSA-${year}-${String(n).padStart(4, "0")}`;
  reg.assigned[key] = id;
  return id;
}

export async function writeRegistry(path: string, reg: IdRegistry): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(reg, null, 2)}\n`);
}
