// The fleet database's schema, in numbered migrations applied in order inside one transaction each.
// One text serves both engines; the few words that differ are spelled through `d`. A database newer than
// this server is refused rather than guessed at.

import { BerthError } from "../common/errors.ts";
import type { Database, Dialect } from "./sql.ts";

export const FLEET_SCHEMA_VERSION = 1;

interface Words {
  /** An integer primary key the database assigns. */
  autoId: string;
  /** Table option for tables that are only a composite key. */
  keyOnly: string;
  float: string;
}

const WORDS: Record<Dialect, Words> = {
  sqlite: { autoId: "INTEGER PRIMARY KEY", keyOnly: " WITHOUT ROWID", float: "REAL" },
  postgres: { autoId: "BIGSERIAL PRIMARY KEY", keyOnly: "", float: "DOUBLE PRECISION" },
};

const MIGRATIONS: Record<number, (d: Words) => string> = {
  1: (d) => `
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE users (
      name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, role TEXT NOT NULL, created_at BIGINT NOT NULL
    );
    -- Enrolment tokens, API tokens and console sessions, by the SHA-256 of the secret.
    CREATE TABLE tokens (
      hash TEXT PRIMARY KEY, kind TEXT NOT NULL, role TEXT, name TEXT NOT NULL,
      created_at BIGINT NOT NULL, expires_at BIGINT, uses_left BIGINT
    );
    CREATE TABLE nodes (
      nid ${d.autoId},
      id TEXT NOT NULL UNIQUE,
      hostname TEXT NOT NULL,
      public_key TEXT NOT NULL,
      machine_id TEXT,
      agent_version TEXT,
      enrolled_at BIGINT NOT NULL,
      last_seen BIGINT,
      -- the X-Berth-Time of the last signed request accepted: replays must be newer
      last_time BIGINT NOT NULL DEFAULT 0,
      seq BIGINT NOT NULL DEFAULT 0,
      report_hash TEXT,
      release TEXT,
      kernel TEXT,
      codename TEXT NOT NULL DEFAULT '',
      os TEXT,
      kernels TEXT NOT NULL DEFAULT '[]',
      update_state TEXT NOT NULL DEFAULT 'idle',
      update_status TEXT,
      harden_profile TEXT,
      harden_score INTEGER,
      harden_rules INTEGER,
      harden_at BIGINT,
      patches TEXT NOT NULL DEFAULT '[]',
      n_packages INTEGER NOT NULL DEFAULT 0,
      n_containers INTEGER NOT NULL DEFAULT 0,
      f_critical INTEGER NOT NULL DEFAULT 0,
      f_high INTEGER NOT NULL DEFAULT 0,
      f_medium INTEGER NOT NULL DEFAULT 0,
      f_low INTEGER NOT NULL DEFAULT 0,
      f_negligible INTEGER NOT NULL DEFAULT 0,
      f_unknown INTEGER NOT NULL DEFAULT 0,
      f_total INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX nodes_by_hostname ON nodes (hostname, id);
    CREATE INDEX nodes_by_last_seen ON nodes (last_seen);
    -- Each distinct installed package once, fleet-wide; nodes point at them.
    CREATE TABLE pkgs (
      id ${d.autoId},
      codename TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL, architecture TEXT NOT NULL,
      status TEXT NOT NULL, source TEXT NOT NULL, source_version TEXT NOT NULL,
      -- the advisory database generation its findings were computed from
      evaluated TEXT NOT NULL DEFAULT '',
      UNIQUE (codename, name, version, architecture, status, source, source_version)
    );
    CREATE INDEX pkgs_by_name ON pkgs (name);
    CREATE TABLE node_pkgs (nid BIGINT NOT NULL, pkg_id BIGINT NOT NULL, PRIMARY KEY (nid, pkg_id))${d.keyOnly};
    CREATE INDEX node_pkgs_by_pkg ON node_pkgs (pkg_id, nid);
    CREATE TABLE pkg_findings (
      pkg_id BIGINT NOT NULL, vuln_id TEXT NOT NULL, severity TEXT NOT NULL, status TEXT NOT NULL,
      fixed_version TEXT, data_source TEXT NOT NULL, PRIMARY KEY (pkg_id, vuln_id)
    )${d.keyOnly};
    CREATE INDEX pkg_findings_by_vuln ON pkg_findings (vuln_id, pkg_id);
    -- Each distinct kernel (with the release it is matched for) once.
    CREATE TABLE kernels (
      id ${d.autoId}, key TEXT NOT NULL UNIQUE, codename TEXT NOT NULL, kernel TEXT NOT NULL,
      evaluated TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE node_kernels (nid BIGINT NOT NULL, kernel_id BIGINT NOT NULL, PRIMARY KEY (nid, kernel_id))${d.keyOnly};
    CREATE INDEX node_kernels_by_kernel ON node_kernels (kernel_id, nid);
    CREATE TABLE kernel_findings (
      kernel_id BIGINT NOT NULL, vuln_id TEXT NOT NULL, package TEXT NOT NULL, installed TEXT NOT NULL,
      severity TEXT NOT NULL, status TEXT NOT NULL, fixed_version TEXT, data_source TEXT NOT NULL,
      PRIMARY KEY (kernel_id, vuln_id)
    )${d.keyOnly};
    CREATE INDEX kernel_findings_by_vuln ON kernel_findings (vuln_id, kernel_id);
    -- Titles and advisories of the vulnerabilities that affect something in the fleet.
    CREATE TABLE vulns (vuln_id TEXT PRIMARY KEY, title TEXT, advisory TEXT);
    CREATE TABLE node_containers (
      nid BIGINT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, image TEXT NOT NULL,
      image_id TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (nid, id)
    )${d.keyOnly};
    CREATE INDEX node_containers_by_image ON node_containers (image);
    CREATE TABLE node_harden_failing (nid BIGINT NOT NULL, rule_id TEXT NOT NULL, PRIMARY KEY (nid, rule_id))${d.keyOnly};
    CREATE INDEX node_harden_by_rule ON node_harden_failing (rule_id);
    CREATE TABLE node_patches (
      nid BIGINT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (nid, kind, name)
    )${d.keyOnly};
    CREATE INDEX node_patches_by_name ON node_patches (name);
    CREATE TABLE jobs (
      id TEXT PRIMARY KEY, nid BIGINT NOT NULL, node_id TEXT NOT NULL, kind TEXT NOT NULL,
      params TEXT NOT NULL, state TEXT NOT NULL, result TEXT, error TEXT, rollout_id TEXT,
      created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL
    );
    CREATE INDEX jobs_by_node ON jobs (nid, state);
    CREATE INDEX jobs_by_rollout ON jobs (rollout_id, state);
    CREATE TABLE rollouts (
      id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, params TEXT NOT NULL,
      waves TEXT NOT NULL, max_concurrent INTEGER NOT NULL, failure_threshold ${d.float} NOT NULL,
      min_finished INTEGER NOT NULL, selector TEXT NOT NULL, state TEXT NOT NULL, reason TEXT,
      created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL
    );
    -- Short leases for work only one server process may do at a time (rollouts, re-evaluation).
    CREATE TABLE leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, until BIGINT NOT NULL);
    CREATE TABLE audit (
      id ${d.autoId}, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT, detail TEXT
    );
    CREATE TABLE vuln_history (
      at BIGINT PRIMARY KEY, critical BIGINT NOT NULL, high BIGINT NOT NULL, medium BIGINT NOT NULL,
      low BIGINT NOT NULL, negligible BIGINT NOT NULL, unknown BIGINT NOT NULL
    );
    CREATE TABLE harden_history (at BIGINT PRIMARY KEY, average ${d.float} NOT NULL, hosts BIGINT NOT NULL);
  `,
};

/** The SQL statements of one migration (split so that both engines take them one by one). */
export function migrationStatements(version: number, dialect: Dialect): string[] {
  const m = MIGRATIONS[version];
  if (!m) throw new BerthError(`no fleet schema migration ${version}`);
  return m(WORDS[dialect])
    .split(/;\s*\n/)
    .map((s) => s.replace(/^\s*--.*$/gm, "").trim())
    .filter(Boolean);
}

export async function schemaVersion(db: Database): Promise<number> {
  try {
    const row = await db.get<{ value: string }>("SELECT value FROM meta WHERE key = 'schema_version'");
    return row ? Number(row.value) : 0;
  } catch {
    return 0;
  }
}

/** Brings the schema to FLEET_SCHEMA_VERSION; returns the version it started from. */
export async function migrate(db: Database): Promise<number> {
  return db.tx(async (tx) => {
    // Two server processes starting together on PostgreSQL: one migrates, the other waits here.
    if (tx.dialect === "postgres") await tx.run("SELECT pg_advisory_xact_lock(7410014)");
    const exists =
      tx.dialect === "sqlite"
        ? await tx.get("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'")
        : await tx.get(
            "SELECT 1 FROM information_schema.tables WHERE table_name = 'meta' AND table_schema = current_schema()",
          );
    const row = exists
      ? await tx.get<{ value: string }>("SELECT value FROM meta WHERE key = 'schema_version'")
      : undefined;
    const current = row ? Number(row.value) : 0;
    if (current > FLEET_SCHEMA_VERSION)
      throw new BerthError(
        `the fleet database has schema ${current}, newer than this server's ${FLEET_SCHEMA_VERSION}`,
      );
    for (let v = current + 1; v <= FLEET_SCHEMA_VERSION; v++) {
      for (const stmt of migrationStatements(v, tx.dialect)) await tx.run(stmt);
      await tx.run(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [String(v)],
      );
    }
    return current;
  });
}
