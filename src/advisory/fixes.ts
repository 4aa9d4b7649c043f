// The CVEs one upgrade fixes: the changelog of the new version (credited the way db/changelog.ts
// credits fixes: the first upload that says it fixes a CVE, nothing else) for the uploads after the old
// version, and the advisory database's Debian rows whose fixed version falls in (old, new].

import { fixedVersions, parseChangelog } from "../db/changelog.ts";
import type { AdvisoryDb } from "../db/database.ts";
import { changelogOf, recordsBySource } from "../db/importers/archive-changelog.ts";
import { severityRank } from "../db/severity.ts";
import type { Archive } from "../pkg/archive.ts";
import type { PackageIndex } from "../pkg/index.ts";
import { compareVersions } from "../pkg/version.ts";
import type { SourceChange } from "./compare.ts";

export interface CveFix {
  cve: string;
  /** The version credited with the fix. */
  fixedIn: string;
  /** Which data said so: "changelog", or an advisory database source (debian-tracker, debian-dsa, ...). */
  sources: string[];
  severity?: string;
  description?: string;
}

const inRange = (v: string, from: string, to: string) =>
  compareVersions(v, from) > 0 && compareVersions(v, to) <= 0;

/** CVEs credited by a changelog to a version in (from, to]. Pure. */
export function changelogFixes(text: string, from: string, to: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const [cve, v] of fixedVersions(parseChangelog(text), compareVersions))
    if (inRange(v, from, to)) out.set(cve, v);
  return out;
}

export async function fixesOf(
  change: SourceChange,
  release: string,
  archive: Archive,
  index: PackageIndex,
  db?: AdvisoryDb,
): Promise<CveFix[]> {
  if (change.kind !== "upgraded" || !change.from || !change.to) return [];
  const fixes = new Map<string, CveFix>();
  const recs = (recordsBySource(index, new Set([change.source])).get(change.source) ?? [])
    .filter((r) => r.sourceVersion === change.to && r.filename)
    .sort(
      (a, b) =>
        Number(change.binaries.includes(b.name)) - Number(change.binaries.includes(a.name)) ||
        (a.size ?? 0) - (b.size ?? 0),
    );
  const text = recs[0] ? await changelogOf(archive, index, recs[0]) : undefined;
  if (text)
    for (const [cve, v] of changelogFixes(text, change.from, change.to))
      fixes.set(cve, { cve, fixedIn: v, sources: ["changelog"] });
  if (db) {
    const rows = db.db
      .prepare(
        "SELECT source, vuln_id, fixed_version, severity FROM advisories WHERE ecosystem = 'debian' AND package = ? AND release IN (?, '') AND status = 'fixed' AND fixed_version IS NOT NULL AND source != 'berth-advisories'",
      )
      .all(change.source, release) as {
      source: string;
      vuln_id: string;
      fixed_version: string;
      severity: string | null;
    }[];
    for (const r of rows) {
      if (!inRange(r.fixed_version, change.from, change.to)) continue;
      const f = fixes.get(r.vuln_id) ?? { cve: r.vuln_id, fixedIn: r.fixed_version, sources: [] };
      if (!f.sources.includes(r.source)) f.sources.push(r.source);
      if (r.severity && severityRank(r.severity) > severityRank(f.severity)) f.severity = r.severity;
      fixes.set(r.vuln_id, f);
    }
    const info = db.db.prepare("SELECT description, severity, cvss FROM vulnerabilities WHERE vuln_id = ?");
    for (const f of fixes.values()) {
      const v = info.get(f.cve) as { description: string | null; severity: string | null } | undefined;
      if (v?.description) f.description = v.description;
      if (v?.severity && severityRank(v.severity) > severityRank(f.severity)) f.severity = v.severity;
    }
  }
  return [...fixes.values()].sort((a, b) => (a.cve < b.cve ? -1 : 1));
}
