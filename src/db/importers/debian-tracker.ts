// The Debian security tracker's JSON export (security-tracker.debian.org/tracker/data/json):
// { source-package: { CVE: { description, scope, debianbug, releases: { codename: { status,
// fixed_version, urgency, nodsa, nodsa_reason, repositories } } } } }

import { BerthError } from "../../common/errors.ts";
import type { AdvisoryDb } from "../database.ts";
import { severityFromUrgency } from "../severity.ts";

export type DebianStatus =
  | "fixed"
  | "not-affected"
  | "no-fix-yet"
  | "will-not-fix"
  | "fix-deferred"
  | "end-of-life"
  | "undetermined";

interface TrackerRelease {
  status?: string;
  fixed_version?: string;
  urgency?: string;
  nodsa?: string;
  nodsa_reason?: string;
}

interface TrackerEntry {
  description?: string;
  scope?: string;
  releases?: Record<string, TrackerRelease> | unknown[];
}

/**
 * The status a scanner should report, the way the best scanners read the tracker: fixed_version "0"
 * means the release was never affected; an open issue marked no-dsa is "will not fix" (or "fix
 * deferred" when postponed); the end-of-life urgency marks releases out of security support.
 */
export function debianStatus(r: TrackerRelease): DebianStatus {
  const urgency = (r.urgency ?? "").replace(/\*+$/, "");
  if (r.status === "resolved") return r.fixed_version === "0" ? "not-affected" : "fixed";
  if (urgency === "end-of-life") return "end-of-life";
  if (r.status === "undetermined") return "undetermined";
  if (r.nodsa_reason === "postponed") return "fix-deferred";
  if (r.nodsa !== undefined || r.nodsa_reason === "ignored") return "will-not-fix";
  return "no-fix-yet";
}

export function importTrackerJson(db: AdvisoryDb, data: unknown, location: string, digest?: string): number {
  if (data === null || typeof data !== "object" || Array.isArray(data))
    throw new BerthError(`${location}: not a Debian tracker export (expected an object of source packages)`);
  const insert = db.db.prepare(
    `INSERT OR REPLACE INTO advisories (source, vuln_id, ecosystem, package, release, status, fixed_version, urgency, severity, nodsa_reason)
     VALUES ('debian-tracker', ?, 'debian', ?, ?, ?, ?, ?, ?, ?)`,
  );
  const describe = db.db.prepare(
    `INSERT INTO vulnerabilities (vuln_id, description) VALUES (?, ?)
     ON CONFLICT(vuln_id) DO UPDATE SET description = COALESCE(vulnerabilities.description, excluded.description)`,
  );
  return db.replaceSource("debian-tracker", location, digest, [], () => {
    let n = 0;
    for (const [pkg, cves] of Object.entries(data as Record<string, Record<string, TrackerEntry>>)) {
      if (!cves || typeof cves !== "object") continue;
      for (const [cve, entry] of Object.entries(cves)) {
        if (!entry || typeof entry !== "object") continue;
        if (entry.description) describe.run(cve, entry.description);
        const releases = entry.releases && !Array.isArray(entry.releases) ? entry.releases : {};
        for (const [codename, r] of Object.entries(releases)) {
          if (!r || typeof r !== "object") continue;
          const status = debianStatus(r);
          insert.run(
            cve,
            pkg,
            codename,
            status,
            status === "fixed" ? (r.fixed_version ?? null) : null,
            r.urgency ?? null,
            severityFromUrgency(r.urgency),
            r.nodsa_reason ?? (r.nodsa !== undefined ? "no-dsa" : null),
          );
          n++;
        }
      }
    }
    return n;
  });
}
