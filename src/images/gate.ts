// The security gate of a build and the periodic rescan: the image's inventory (its own status file)
// matched against the advisory database, after the archive's changelogs have been read for every
// package with a newer version in the update suites. A fixable HIGH or CRITICAL vulnerability fails the
// build unless the definition accepts it with a reason; unfixed ones are reported with Debian's status
// and never hidden.

import type { Progress } from "../common/progress.ts";
import type { AdvisoryDb } from "../db/database.ts";
import { importArchiveChangelogs } from "../db/importers/archive-changelog.ts";
import { severityRank } from "../db/severity.ts";
import type { Archive } from "../pkg/archive.ts";
import type { PackageIndex } from "../pkg/index.ts";
import type { Inventory } from "../scan/inventory.ts";
import { type Finding, matchInventory } from "../scan/match.ts";
import type { ImageDefinition } from "./definition.ts";

export interface GateResult {
  findings: Finding[];
  /** Fixable HIGH/CRITICAL findings the definition does not accept: the build fails on these. */
  blocking: Finding[];
  /** Fixable HIGH/CRITICAL findings let through by `accepted:`, with the reason. */
  accepted: (Finding & { reason: string })[];
  summary: CveSummary;
}

export interface CveSummary {
  total: number;
  fixable: number;
  fixableHighOrCritical: number;
  unfixed: number;
  bySeverity: Record<string, number>;
  /** Unfixed findings by Debian's status (no-fix-yet, will-not-fix, fix-deferred, ...). */
  byStatus: Record<string, number>;
}

export function summarizeFindings(findings: Finding[]): CveSummary {
  const bySeverity: Record<string, number> = {};
  const byStatus: Record<string, number> = {};
  for (const f of findings) {
    bySeverity[f.severity] = (bySeverity[f.severity] ?? 0) + 1;
    byStatus[f.status] = (byStatus[f.status] ?? 0) + 1;
  }
  const fixable = findings.filter((f) => f.status === "fixed");
  return {
    total: findings.length,
    fixable: fixable.length,
    fixableHighOrCritical: fixable.filter((f) => severityRank(f.severity) >= severityRank("HIGH")).length,
    unfixed: findings.length - fixable.length,
    bySeverity,
    byStatus,
  };
}

/** Applies the gate's rule to findings. Pure. */
export function judge(findings: Finding[], def: Pick<ImageDefinition, "accepted">): GateResult {
  const serious = findings.filter(
    (f) => f.status === "fixed" && severityRank(f.severity) >= severityRank("HIGH"),
  );
  const reasons = new Map(def.accepted.map((a) => [a.cve, a.reason]));
  return {
    findings,
    blocking: serious.filter((f) => !reasons.has(f.vulnId)),
    accepted: serious
      .filter((f) => reasons.has(f.vulnId))
      .map((f) => ({ ...f, reason: reasons.get(f.vulnId)! })),
    summary: summarizeFindings(findings),
  };
}

/**
 * Refreshes the database's archive-derived fixes for the inventory's packages (changelogs of their
 * newer versions in `updates`), then matches. The other sources come from `berth db update`.
 */
export async function scanInventory(
  db: AdvisoryDb,
  archive: Archive,
  updates: { index: PackageIndex; location: string },
  inv: Inventory,
  progress?: Progress,
): Promise<Finding[]> {
  const codename = inv.os?.codename ?? "trixie";
  await importArchiveChangelogs(
    db,
    archive,
    updates.index,
    inv.packages,
    codename,
    updates.location,
    progress,
  );
  return matchInventory(db, inv, { release: codename });
}
