// Fix data from the Debian archive itself: for the source packages of an inventory that have a newer
// version in the configured suites (main, updates, security), the newest .deb's changelog.Debian.gz
// says which CVEs each upload fixed (db/changelog.ts decides what counts as a fix and which version it
// is credited to). Packages already at the newest version need nothing from this source, so nothing is
// fetched for them.

import { readFile } from "node:fs/promises";
import { join, posix } from "node:path";
import { gunzipSync } from "node:zlib";
import { writeFileAtomic } from "../../common/fsutil.ts";
import { HttpNotFound } from "../../common/http.ts";
import { type Progress, silentProgress } from "../../common/progress.ts";
import type { Archive } from "../../pkg/archive.ts";
import { listDeb, readDebFile } from "../../pkg/deb.ts";
import type { PackageIndex, PackageRecord } from "../../pkg/index.ts";
import type { InstalledPackage } from "../../pkg/status.ts";
import { compareVersions } from "../../pkg/version.ts";
import { fixedVersions, parseChangelog } from "../changelog.ts";
import type { AdvisoryDb } from "../database.ts";

/** Bumped whenever crediting changes, so fixes derived by an older rule are not reused. */
const DERIVED_VERSION = "changelog-cves-v2";

export interface ArchivePlan {
  source: string;
  installed: string;
  newest: string;
  /** The binary whose .deb is read (the smallest one, preferring installed names). */
  record: PackageRecord;
}

/** Every record of the index, by source package name. */
export function recordsBySource(index: PackageIndex, wanted?: Set<string>): Map<string, PackageRecord[]> {
  const bySource = new Map<string, PackageRecord[]>();
  for (const name of index.names())
    for (const rec of index.allVersions(name)) {
      if (wanted && !wanted.has(rec.source)) continue;
      const list = bySource.get(rec.source) ?? [];
      list.push(rec);
      bySource.set(rec.source, list);
    }
  return bySource;
}

/** The binaries of one source version that can be downloaded, smallest first, `prefer`red names first. */
function readableRecords(
  recs: PackageRecord[],
  version: string,
  prefer = new Set<string>(),
): PackageRecord[] {
  return recs
    .filter((r) => r.sourceVersion === version && r.filename)
    .sort((a, b) => Number(prefer.has(b.name)) - Number(prefer.has(a.name)) || (a.size ?? 0) - (b.size ?? 0));
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
  const bySource = recordsBySource(index, new Set(haveVersion.keys()));
  const plans: ArchivePlan[] = [];
  for (const [source, installedVersion] of haveVersion) {
    const recs = bySource.get(source) ?? [];
    if (!recs.length) continue;
    const newest = recs.reduce((a, b) =>
      compareVersions(b.sourceVersion, a.sourceVersion) > 0 ? b : a,
    ).sourceVersion;
    if (compareVersions(newest, installedVersion) <= 0) continue;
    const record = readableRecords(recs, newest, haveNames)[0];
    if (record) plans.push({ source, installed: installedVersion, newest, record });
  }
  return plans.sort((a, b) => (a.source < b.source ? -1 : 1));
}

/**
 * The changelog text of a .deb, following a doc directory that is a symlink to another package's.
 * Kept in the cache by the .deb's hash (finding it can mean unpacking a large data tarball).
 */
export async function changelogOf(
  archive: Archive,
  index: PackageIndex,
  rec: PackageRecord,
): Promise<string | undefined> {
  const file = rec.sha256 && join(await archive.cache.dir("derived", "changelogs"), `${rec.sha256}.json`);
  if (file)
    try {
      return (JSON.parse(await readFile(file, "utf8")) as { text?: string }).text;
    } catch {}
  const text = await readChangelog(archive, index, rec, 0);
  if (file) await writeFileAtomic(file, JSON.stringify({ text }));
  return text;
}

async function readChangelog(
  archive: Archive,
  index: PackageIndex,
  rec: PackageRecord,
  depth: number,
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
  return other ? readChangelog(archive, index, other, depth + 1) : undefined;
}

/**
 * The changelog of each source package's newest version that the mirror serves: a version whose .debs
 * are missing from the pool (a mirror that carries the index but not every file) falls back to the next
 * older one. Sources without a readable changelog are left out.
 */
export async function sourceChangelogs(
  archive: Archive,
  index: PackageIndex,
  sources: Iterable<string>,
  progress: Progress = silentProgress,
): Promise<Map<string, { version: string; text: string }>> {
  const wanted = new Set(sources);
  const bySource = recordsBySource(index, wanted);
  const out = new Map<string, { version: string; text: string }>();
  const task = progress.task("reading changelogs", wanted.size);
  try {
    for (const source of [...wanted].sort()) {
      const recs = bySource.get(source) ?? [];
      const versions = [...new Set(recs.map((r) => r.sourceVersion))].sort((a, b) => compareVersions(b, a));
      for (const version of versions) {
        const rec = readableRecords(recs, version)[0];
        if (!rec) continue;
        try {
          const text = await changelogOf(archive, index, rec);
          if (text) out.set(source, { version, text });
          break;
        } catch (e) {
          if (!(e instanceof HttpNotFound)) throw e;
        }
      }
      task.advance(1);
    }
  } finally {
    task.done();
  }
  return out;
}

export interface ArchiveImportResult {
  checked: number;
  pending: ArchivePlan[];
  records: number;
  /** Pending source packages whose changelog could not be read (the mirror lacks the .deb). */
  unreadable: string[];
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
  const unreadable: string[] = [];
  const derived = await archive.cache.dir("derived", DERIVED_VERSION);
  try {
    for (const plan of pending) {
      const cacheFile = join(derived, `${plan.record.sha256}.json`);
      let fixes: Record<string, string> | undefined;
      try {
        fixes = JSON.parse(await readFile(cacheFile, "utf8")) as Record<string, string>;
      } catch {
        try {
          const text = await changelogOf(archive, index, plan.record);
          fixes = text ? Object.fromEntries(fixedVersions(parseChangelog(text), compareVersions)) : {};
          await writeFileAtomic(cacheFile, JSON.stringify(fixes));
        } catch (e) {
          if (!(e instanceof HttpNotFound)) throw e;
          unreadable.push(plan.source);
        }
      }
      for (const [cve, version] of Object.entries(fixes ?? {})) rows.push([cve, plan.source, version]);
      task.advance(1);
    }
  } finally {
    task.done();
  }
  const insert = db.db.prepare(
    `INSERT OR REPLACE INTO advisories (source, vuln_id, ecosystem, package, release, status, fixed_version)
     VALUES ('debian-archive', ?, 'debian', ?, ?, 'fixed', ?)`,
  );
  const forget = db.db.prepare(
    "DELETE FROM advisories WHERE source = 'debian-archive' AND package = ? AND release = ?",
  );
  // Derived from immutable .debs, so rows accumulate across targets; a package read again replaces
  // what an older reading said about it; the source row is refreshed.
  db.transaction(() => {
    for (const plan of pending) if (!unreadable.includes(plan.source)) forget.run(plan.source, release);
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
  return { checked: new Set(installed.map((p) => p.source)).size, pending, records: rows.length, unreadable };
}
