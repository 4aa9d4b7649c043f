// Berth Security Advisories (BSA-YYYY-NNNN, OSV JSON, written by `berth advisory generate`) from a Berth
// repository. They are read only through the TUF client (src/repo/client.ts) with a trusted root: a
// mirror, or anyone on the path, cannot add, change or withhold one unnoticed. Each advisory's affected
// Debian packages become fixed rows (one per CVE it names) that carry the BSA id; the Berth releases and
// image digests it calls affected and fixed go to berth_advisories, for "fixed in Berth 2026.12.2".

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cacheRoot } from "../../common/cache.ts";
import { BerthError } from "../../common/errors.ts";
import { BAKED_ROOT, bakedUrl, defaultCacheDir, RepoClient } from "../../repo/client.ts";
import type { AdvisoryDb } from "../database.ts";
import { SEVERITIES } from "../severity.ts";

/** What Berth puts under database_specific.berth of a BSA. */
export interface BsaBerthFields {
  /** The Debian codename the packages come from. */
  release: string;
  affected_releases: string[];
  fixed_releases: string[];
  affected_images: string[];
  fixed_images: string[];
  /** Debian's urgency-derived rating, or the highest CVSS rating of its CVEs. */
  severity?: string;
}

interface BsaDoc {
  id?: unknown;
  modified?: unknown;
  summary?: unknown;
  related?: unknown;
  upstream?: unknown;
  affected?: {
    package?: { ecosystem?: unknown; name?: unknown };
    ranges?: { type?: unknown; events?: Record<string, unknown>[] }[];
  }[];
  database_specific?: { berth?: Partial<BsaBerthFields> };
}

const strings = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];

/** Imports BSA documents, replacing what this source imported before. Returns the rows written. */
export function importBerthAdvisories(db: AdvisoryDb, docs: unknown[], location: string): number {
  const insert = db.db.prepare(
    `INSERT OR REPLACE INTO advisories (source, vuln_id, ecosystem, package, release, status, fixed_version, severity, advisory)
     VALUES ('berth-advisories', ?, 'debian', ?, ?, 'fixed', ?, ?, ?)`,
  );
  const describe = db.db.prepare(
    `INSERT OR REPLACE INTO berth_advisories (id, modified, summary, severity, affected_releases, fixed_releases, affected_images, fixed_images)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  return db.replaceSource("berth-advisories", location, undefined, ["berth_advisories"], () => {
    let n = 0;
    for (const raw of docs) {
      const d = raw as BsaDoc;
      if (typeof d?.id !== "string" || typeof d.modified !== "string")
        throw new BerthError(`${location}: an advisory without "id" or "modified"`);
      const b = d.database_specific?.berth ?? {};
      if (typeof b.release !== "string") throw new BerthError(`${location}: ${d.id} names no Debian release`);
      const rating = typeof b.severity === "string" ? b.severity.toUpperCase() : "";
      const severity = (SEVERITIES as readonly string[]).includes(rating) ? rating : null;
      describe.run(
        d.id,
        d.modified,
        typeof d.summary === "string" ? d.summary : null,
        severity,
        JSON.stringify(strings(b.affected_releases)),
        JSON.stringify(strings(b.fixed_releases)),
        JSON.stringify(strings(b.affected_images)),
        JSON.stringify(strings(b.fixed_images)),
      );
      const cves = [...new Set([...strings(d.related), ...strings(d.upstream)])];
      for (const a of d.affected ?? []) {
        if (typeof a.package?.name !== "string" || !String(a.package.ecosystem ?? "").startsWith("Debian"))
          continue;
        const fixed = (a.ranges ?? [])
          .flatMap((r) => r.events ?? [])
          .map((e) => e.fixed)
          .find((v): v is string => typeof v === "string");
        if (!fixed) continue;
        for (const cve of cves.length ? cves : [d.id]) {
          insert.run(cve, a.package.name, b.release, fixed, severity, d.id);
          n++;
        }
      }
    }
    return n;
  });
}

/**
 * Every advisory target of the repository at `url`, verified by the TUF client against `trustedRoot`
 * (default: the root baked into a Berth image). The client's verified metadata is kept per anchor in
 * Berth's cache, so a later import refuses a rollback to older metadata.
 */
export async function fetchBerthAdvisories(
  url: string | undefined,
  o: { trustedRoot?: string; cacheDir?: string } = {},
): Promise<{ url: string; docs: unknown[] }> {
  const location = url ?? bakedUrl();
  if (!location) throw new BerthError("berth-advisories needs a repository: --source berth-advisories=URL");
  const trustedRoot = o.trustedRoot ?? BAKED_ROOT;
  const client = new RepoClient({
    url: location,
    trustedRoot,
    cacheDir: o.cacheDir ?? defaultCacheDir(trustedRoot, join(cacheRoot(), "db", "repository-state")),
  });
  await client.refresh();
  const targets = await client.targets("advisory");
  const work = await mkdtemp(join(tmpdir(), "berth-bsa-"));
  try {
    const docs: unknown[] = [];
    for (const t of targets) {
      const file = await client.download(t.name, join(work, `${docs.length}.json`));
      try {
        docs.push(JSON.parse(await readFile(file, "utf8")));
      } catch (e) {
        throw new BerthError(`${t.name}: not JSON (${(e as Error).message.split("\n")[0]})`);
      }
    }
    return { url: client.url, docs };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
