// Berth's advisory database: node:sqlite, one file, a versioned schema migrated in place.
// Importers write advisories; the scanner reads them. Nothing here knows a data format.

import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { cacheRoot } from "../common/cache.ts";
import { BerthError } from "../common/errors.ts";

export const SCHEMA_VERSION = 2;

const MIGRATIONS: Record<number, string> = {
  1: `
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    -- One row per imported source: what, from where, when, how many records.
    CREATE TABLE sources (
      name TEXT PRIMARY KEY,
      location TEXT NOT NULL,
      imported_at TEXT NOT NULL,
      records INTEGER NOT NULL,
      digest TEXT
    );
    -- Distribution advisories, one row per (source, vulnerability, package, release).
    -- package is the SOURCE package for Debian; release is a codename ('' when it applies to all).
    CREATE TABLE advisories (
      source TEXT NOT NULL,
      vuln_id TEXT NOT NULL,
      ecosystem TEXT NOT NULL,
      package TEXT NOT NULL,
      release TEXT NOT NULL DEFAULT '',
      status TEXT NOT NULL,
      fixed_version TEXT,
      ranges TEXT,
      urgency TEXT,
      severity TEXT,
      cvss REAL,
      advisory TEXT,
      nodsa_reason TEXT,
      PRIMARY KEY (source, vuln_id, ecosystem, package, release)
    );
    CREATE INDEX advisories_by_package ON advisories (ecosystem, package);
    -- Per-vulnerability text and scores, from whichever source had them.
    CREATE TABLE vulnerabilities (
      vuln_id TEXT PRIMARY KEY,
      title TEXT,
      description TEXT,
      cvss REAL,
      cvss_vector TEXT,
      severity TEXT,
      aliases TEXT,
      published TEXT
    );
    -- Linux kernel CNA: the semver "affected" entry of each CVE record (JSON of its versions).
    CREATE TABLE kernel_cna (
      cve TEXT PRIMARY KEY,
      default_status TEXT NOT NULL,
      versions TEXT NOT NULL,
      program_files TEXT
    );
    -- Older kernel CVEs: fixed version per stable branch, and mainline introduce/fix versions.
    CREATE TABLE kernel_streams (cve TEXT NOT NULL, branch TEXT NOT NULL, fixed_version TEXT NOT NULL, PRIMARY KEY (cve, branch));
    CREATE TABLE kernel_mainline (cve TEXT PRIMARY KEY, introduced TEXT, fixed TEXT);
  `,
  2: `
    -- Berth Security Advisories (BSA-YYYY-NNNN) imported from a Berth repository: which Berth releases and
    -- image digests each one says are affected and fixed. Their per-CVE rows are in advisories.
    CREATE TABLE berth_advisories (
      id TEXT PRIMARY KEY,
      modified TEXT NOT NULL,
      summary TEXT,
      severity TEXT,
      affected_releases TEXT NOT NULL,
      fixed_releases TEXT NOT NULL,
      affected_images TEXT NOT NULL,
      fixed_images TEXT NOT NULL
    );
  `,
};

export function defaultDbPath(): string {
  return process.env.BERTH_DB || join(cacheRoot(), "db", "berth.sqlite");
}

export class AdvisoryDb {
  readonly db: DatabaseSync;
  readonly path: string;

  constructor(path = defaultDbPath(), options: { readOnly?: boolean } = {}) {
    this.path = path;
    if (!options.readOnly) mkdirSync(dirname(path), { recursive: true });
    try {
      this.db = new DatabaseSync(path, { readOnly: options.readOnly ?? false });
    } catch (e) {
      throw new BerthError(`cannot open advisory database ${path}: ${(e as Error).message}`);
    }
    if (!options.readOnly) this.migrate();
    else if (this.schemaVersion() !== SCHEMA_VERSION)
      throw new BerthError(
        `advisory database ${path} has schema ${this.schemaVersion()}, this berth needs ${SCHEMA_VERSION}; run berth db update`,
      );
  }

  schemaVersion(): number {
    try {
      const row = this.db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as
        | { value: string }
        | undefined;
      return row ? Number(row.value) : 0;
    } catch {
      return 0;
    }
  }

  private migrate(): void {
    const current = this.schemaVersion();
    if (current > SCHEMA_VERSION)
      throw new BerthError(
        `advisory database ${this.path} is newer (schema ${current}) than this berth (${SCHEMA_VERSION})`,
      );
    for (let v = current + 1; v <= SCHEMA_VERSION; v++) {
      this.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db
          .prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)")
          .run(String(v));
      });
    }
  }

  transaction<T>(f: () => T): T {
    this.db.exec("BEGIN");
    try {
      const r = f();
      this.db.exec("COMMIT");
      return r;
    } catch (e) {
      this.db.exec("ROLLBACK");
      throw e;
    }
  }

  /**
   * Replaces everything one source imported before, atomically: its advisories, and the whole of any
   * source-specific tables it owns (kernel data).
   */
  replaceSource(
    name: string,
    location: string,
    digest: string | undefined,
    ownTables: string[],
    write: () => number,
  ): number {
    return this.transaction(() => {
      this.db.prepare("DELETE FROM advisories WHERE source = ?").run(name);
      for (const table of ownTables) this.db.exec(`DELETE FROM ${table}`);
      const records = write();

      this.db
        .prepare(
          "INSERT OR REPLACE INTO sources (name, location, imported_at, records, digest) VALUES (?, ?, ?, ?, ?)",
        )
        .run(name, location, new Date().toISOString(), records, digest ?? null);
      return records;
    });
  }

  sources(): {
    name: string;
    location: string;
    imported_at: string;
    records: number;
    digest: string | null;
  }[] {
    return this.db
      .prepare("SELECT name, location, imported_at, records, digest FROM sources ORDER BY name")
      .all() as never;
  }

  /** Each source with its age in days at `now`. */
  sourceAges(now = Date.now()): { name: string; importedAt: string; ageDays: number }[] {
    return this.sources().map((s) => ({
      name: s.name,
      importedAt: s.imported_at,
      ageDays: (now - Date.parse(s.imported_at)) / 86_400_000,
    }));
  }

  close(): void {
    this.db.close();
  }
}
