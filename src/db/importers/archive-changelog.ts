// Fix data from the Debian archive itself: for the source packages of an inventory that have a newer
// version in the configured suites (main, updates, security), the newest .deb's changelog.Debian.gz
// names the CVEs each upload fixed. "CVE fixed in version V" is the oldest entry naming the CVE.
// Packages already at the newest version need nothing from this source, so nothing is fetched for them.

import { readFile } from "node:fs/promises";
import { join, posix } from "node:path";
import { gunzipSync } from "node:zlib";
import { writeFileAtomic } from "../../common/fsutil.ts";
import { type Progress, silentProgress } from "../../common/progress.ts";
import type { Archive } from "../../pkg/archive.ts";
import { listDeb, readDebFile } from "../../pkg/deb.ts";
import type { PackageIndex, PackageRecord } from "../../pkg/index.ts";
import type { InstalledPackage } from "../../pkg/status.ts";
import { compareVersions } from "../../pkg/version.ts";
import { fixedVersions, parseChangelog } from "../changelog.ts";
import type { AdvisoryDb } from "../database.ts";

export interface ArchivePlan {
  source: string;
  installed: string;
  newest: string;
  /** The binary whose .deb is read (the smallest one, preferring installed names). */
  record: PackageRecord;
}

/** Source packages of `installed` with a newer source version in the index. Pure. */
export function pendingSources(index: PackageIndex, installed: InstalledPackage[]): ArchivePlan[] {
  const haveVersion = new Map<string, string>();
  const haveNames = new Set<string>();
  for (const p of installed) {
    if (p.status !== "installed") continue;
    haveNames.add(p.name);
    const prev = haveVersion.get(p.source);
    if (!prev || compareVersions(p.sourceVersion, prev) > 0) haveVersion.set(p.source, p.sourceVersion);
  }
  const bySource = new Map<string, PackageRecord[]>();
  for (const name of index.names())
    for (const rec of index.allVersions(name)) {
      if (!haveVersion.has(rec.source)) continue;
      const list = bySource.get(rec.source) ?? [];
      list.push(rec);
      bySource.set(rec.source, list);
    }
  const plans: ArchivePlan[] = [];
  for (const [source, installedVersion] of haveVersion) {
    const recs = bySource.get(source) ?? [];
    if (!recs.length) continue;
    const newest = recs.reduce((a, b) =>
      compareVersions(b.sourceVersion, a.sourceVersion) > 0 ? b : a,
    ).sourceVersion;
    if (compareVersions(newest, installedVersion) <= 0) continue;
    const candidates = recs.filter((r) => r.sourceVersion === newest && r.filename);
    const record = candidates.sort(
      (a, b) =>
        Number(haveNames.has(b.name)) - Number(haveNames.has(a.name)) || (a.size ?? 0) - (b.size ?? 0),
    )[0];
    if (record) plans.push({ source, installed: installedVersion, newest, record });
  }
  return plans.sort((a, b) => (a.source < b.source ? -1 : 1));
}

/** The changelog text of a .deb, following a doc directory that is a symlink to another package's. */
async function changelogOf(
  archive: Archive,
  index: PackageIndex,
  rec: PackageRecord,
  depth = 0,
): Promise<string | undefined> {
  const deb = await archive.fetchDeb(rec);
  const gz = await readDebFile(deb, `usr/share/doc/${rec.name}/changelog.Debian.gz`);
  if (gz) return gunzipSync(gz).toString("utf8");
  if (depth > 1) return undefined;
  const link = (await listDeb(deb)).find(
    (e) => e.path === `usr/share/doc/${rec.name}` && e.type === "symlink",
  );
  if (!link?.linkname) return undefined;
  const target = posix.basename(link.linkname);
  const other =
    index.allVersions(target).find((r) => r.sourceVersion === rec.sourceVersion) ?? index.candidate(target);
  return other ? changelogOf(archive, index, other, depth + 1) : undefined;
}

export interface ArchiveImportResult {
  checked: number;
  pending: ArchivePlan[];
  records: number;
}

export async function importArchiveChangelogs(
  db: AdvisoryDb,
  archive: Archive,
  index: PackageIndex,
  installed: InstalledPackage[],
  release: string,
  location: string,
  progress: Progress = silentProgress,
): Promise<ArchiveImportResult> {
  const pending = pendingSources(index, installed);
  const task = progress.task("reading changelogs of newer packages", pending.length);
  const rows: [string, string, string][] = [];
  const derived = await archive.cache.dir("derived", "changelog-cves");
  try {
    for (const plan of pending) {
      const cacheFile = join(derived, `${plan.record.sha256}.json`);
      let fixes: Record<string, string>;
      try {
        fixes = JSON.parse(await readFile(cacheFile, "utf8")) as Record<string, string>;
      } catch {
        const text = await changelogOf(archive, index, plan.record);
        fixes = text ? Object.fromEntries(fixedVersions(parseChangelog(text), compareVersions)) : {};
        await writeFileAtomic(cacheFile, JSON.stringify(fixes));
      }
      for (const [cve, version] of Object.entries(fixes)) rows.push([cve, plan.source, version]);
      task.advance(1);
    }
  } finally {
    task.done();
  }
  const insert = db.db.prepare(
    `INSERT OR REPLACE INTO advisories (source, vuln_id, ecosystem, package, release, status, fixed_version)
     VALUES ('debian-archive', ?, 'debian', ?, ?, 'fixed', ?)`,
  );
  // Derived from immutable .debs, so rows accumulate across targets; the source row is refreshed.
  db.transaction(() => {
    for (const [cve, source, version] of rows) insert.run(cve, source, release, version);
    const total = (
      db.db.prepare("SELECT COUNT(*) AS n FROM advisories WHERE source = 'debian-archive'").get() as {
        n: number;
      }
    ).n;
    db.db
      .prepare(
        "INSERT OR REPLACE INTO sources (name, location, imported_at, records, digest) VALUES ('debian-archive', ?, ?, ?, NULL)",
      )
      .run(location, new Date().toISOString(), total);
  });
  return { checked: new Set(installed.map((p) => p.source)).size, pending, records: rows.length };
}
