// What changed between two releases, by source package: upgraded (with the versions on both sides),
// added, removed. Pure.

import { compareVersions } from "../pkg/version.ts";
import type { Release } from "./release.ts";

export interface SourceChange {
  source: string;
  kind: "upgraded" | "downgraded" | "added" | "removed";
  from?: string;
  to?: string;
  /** The binary packages of the source in the newer release (the older one for "removed"). */
  binaries: string[];
}

function bySource(r: Release): Map<string, { version: string; binaries: string[] }> {
  const out = new Map<string, { version: string; binaries: string[] }>();
  for (const p of r.packages) {
    const cur = out.get(p.source);
    if (!cur) out.set(p.source, { version: p.sourceVersion, binaries: [p.name] });
    else {
      cur.binaries.push(p.name);
      if (compareVersions(p.sourceVersion, cur.version) > 0) cur.version = p.sourceVersion;
    }
  }
  return out;
}

export function compareReleases(older: Release, newer: Release): SourceChange[] {
  const a = bySource(older);
  const b = bySource(newer);
  const out: SourceChange[] = [];
  for (const [source, n] of b) {
    const o = a.get(source);
    const binaries = [...new Set(n.binaries)].sort();
    if (!o) out.push({ source, kind: "added", to: n.version, binaries });
    else {
      const c = compareVersions(n.version, o.version);
      if (c)
        out.push({
          source,
          kind: c > 0 ? "upgraded" : "downgraded",
          from: o.version,
          to: n.version,
          binaries,
        });
    }
  }
  for (const [source, o] of a)
    if (!b.has(source))
      out.push({ source, kind: "removed", from: o.version, binaries: [...new Set(o.binaries)].sort() });
  return out.sort((x, y) => (x.source < y.source ? -1 : x.source > y.source ? 1 : 0));
}
