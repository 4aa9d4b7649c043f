// Matching an inventory against the advisory database.
// Debian packages match by SOURCE package and version against each source's data for the target's
// release, with the tracker's statuses read the way the best scanners read them. Kernels match on their
// own: Debian kernel images by Debian's data for "linux", other kernels by the kernel CNA's per-branch
// ranges and the older per-branch fix data. Binaries built from the linux source that are not kernel
// images (linux-libc-dev, headers, kbuild) are never reported as a vulnerable kernel.

import type { AdvisoryDb } from "../db/database.ts";
import { inOsvRange, type OsvEvent } from "../db/importers/osv.ts";
import { type Severity, severityFromCvss, severityRank } from "../db/severity.ts";
import { compareVersions } from "../pkg/version.ts";
import {
  type Inventory,
  type InventoryPackage,
  isKernelImage,
  type KernelInfo,
  type LayerRef,
} from "./inventory.ts";
import { type CnaVersion, cnaAffects, cnaFixedIn, streamAffects } from "./kernel-match.ts";

export type FindingStatus =
  | "fixed"
  | "no-fix-yet"
  | "will-not-fix"
  | "fix-deferred"
  | "end-of-life"
  | "undetermined";

export interface Finding {
  vulnId: string;
  /** The binary package (or kernel) affected. */
  package: string;
  source: string;
  installed: string;
  /** The installed source package version (what Debian's data is about). */
  sourceVersion?: string;
  /** The version that fixes it, when there is one. */
  fixedVersion?: string;
  status: FindingStatus;
  severity: Severity;
  urgency?: string;
  cvss?: number;
  title?: string;
  description?: string;
  advisory?: string;
  /** Which data said so: debian-tracker, debian-dsa, debian-archive, kernel-cna, kernel-streams. */
  dataSource: string;
  layer?: LayerRef;
  kernel?: { release: string; running: boolean; upstream?: string };
  /** The Berth Security Advisory that fixes it, and the Berth releases / image digests it is fixed in. */
  berthFix?: { advisory: string; releases: string[]; images: string[] };
}

interface AdvisoryRow {
  source: string;
  vuln_id: string;
  package: string;
  release: string;
  status: string;
  fixed_version: string | null;
  urgency: string | null;
  severity: string | null;
  advisory: string | null;
  ranges: string | null;
}

interface VulnRow {
  vuln_id: string;
  title: string | null;
  description: string | null;
  cvss: number | null;
  severity: string | null;
}

/** Which source wins when several speak about the same vulnerability and package. */
const AUTHORITY = ["debian-tracker", "debian-dsa", "debian-dla", "osv", "debian-archive", "berth-advisories"];

/** Source packages whose binaries include the kernel; their other binaries are not kernels. */
const KERNEL_SOURCES = /^linux(-signed-[a-z0-9]+)?$/;

function vulnInfo(db: AdvisoryDb, ids: string[]): Map<string, VulnRow> {
  const out = new Map<string, VulnRow>();
  const stmt = db.db.prepare(
    "SELECT vuln_id, title, description, cvss, severity FROM vulnerabilities WHERE vuln_id = ?",
  );
  for (const id of new Set(ids)) {
    const row = stmt.get(id) as VulnRow | undefined;
    if (row) out.set(id, row);
  }
  return out;
}

/** Decides one (vulnerability, package) from the rows of every source; undefined when not affected. */
export function decide(
  rows: AdvisoryRow[],
  installed: string,
): { row: AdvisoryRow; status: FindingStatus } | undefined {
  const ranked = [...rows].sort((a, b) => AUTHORITY.indexOf(a.source) - AUTHORITY.indexOf(b.source));
  const best = ranked[0];
  if (!best) return undefined;
  if (best.status === "not-affected") return undefined;
  if (best.ranges) {
    // OSV: affected when the version is listed or falls in a range.
    const r = JSON.parse(best.ranges) as { ranges: OsvEvent[][]; versions: string[] };
    const hit =
      r.versions.includes(installed) ||
      r.ranges.some((events) => inOsvRange(installed, events, compareVersions));
    if (!hit) return undefined;
    return { row: best, status: best.fixed_version ? "fixed" : "no-fix-yet" };
  }
  if (best.status === "fixed") {
    if (!best.fixed_version) return undefined;
    return compareVersions(installed, best.fixed_version) < 0 ? { row: best, status: "fixed" } : undefined;
  }
  return { row: best, status: best.status as FindingStatus };
}

/** Advisory rows of Debian's data for one source package, in the release or release-independent. */
function debianRows(db: AdvisoryDb): (source: string, release: string) => AdvisoryRow[] {
  const stmt = db.db.prepare(
    "SELECT source, vuln_id, package, release, status, fixed_version, urgency, severity, advisory, ranges FROM advisories WHERE ecosystem = 'debian' AND package = ? AND release IN (?, '')",
  );
  return (source, release) => stmt.all(source, release) as unknown as AdvisoryRow[];
}

/** One finding per vulnerability the rows say affects `version` of an installed binary package. */
function findingsFromRows(
  rows: AdvisoryRow[],
  version: string,
  what: { package: string; source: string; installed: string; sourceVersion?: string },
  extra: Pick<Finding, "layer"> | Pick<Finding, "kernel">,
): Finding[] {
  const byVuln = new Map<string, AdvisoryRow[]>();
  for (const r of rows) byVuln.set(r.vuln_id, [...(byVuln.get(r.vuln_id) ?? []), r]);
  const out: Finding[] = [];
  for (const [vuln, vrows] of byVuln) {
    const d = decide(vrows, version);
    if (!d) continue;
    out.push({
      vulnId: vuln,
      ...what,
      fixedVersion: d.status === "fixed" ? (d.row.fixed_version ?? undefined) : undefined,
      status: d.status,
      severity: (d.row.severity as Severity | null) ?? "UNKNOWN",
      urgency: d.row.urgency ?? undefined,
      advisory: d.row.advisory ?? undefined,
      dataSource: d.row.source,
      ...extra,
    });
  }
  return out;
}

function matchDebianPackages(db: AdvisoryDb, packages: InventoryPackage[], release: string): Finding[] {
  const rowsOf = debianRows(db);
  const bySource = new Map<string, AdvisoryRow[]>();
  const findings: Finding[] = [];
  for (const p of packages) {
    if (p.status !== "installed") continue;
    if (KERNEL_SOURCES.test(p.source) && !isKernelImage(p.name)) continue; // linux-libc-dev, headers: not a kernel
    if (isKernelImage(p.name)) continue; // kernels are matched by matchKernels
    let rows = bySource.get(p.source);
    if (!rows) {
      rows = rowsOf(p.source, release);
      bySource.set(p.source, rows);
    }
    findings.push(
      ...findingsFromRows(
        rows,
        p.sourceVersion,
        { package: p.name, source: p.source, installed: p.version, sourceVersion: p.sourceVersion },
        { layer: p.layer },
      ),
    );
  }
  return findings;
}

interface CnaRow {
  cve: string;
  default_status: string;
  versions: string;
}

/** Upstream data for one kernel version: the CNA records and the older per-branch data. */
export function matchUpstreamKernel(db: AdvisoryDb, k: KernelInfo): Finding[] {
  if (!k.upstream) return [];
  const out: Finding[] = [];
  const base = (cve: string, fixedVersion: string | undefined, dataSource: string): Finding => ({
    vulnId: cve,
    package: k.package ?? `linux ${k.release}`,
    source: "linux",
    installed: k.packageVersion ?? k.upstream!,
    fixedVersion,
    status: fixedVersion ? "fixed" : "no-fix-yet",
    severity: "UNKNOWN",
    dataSource,
    kernel: { release: k.release, running: k.running, upstream: k.upstream },
  });
  const seen = new Set<string>();
  for (const row of db.db
    .prepare("SELECT cve, default_status, versions FROM kernel_cna")
    .all() as unknown as CnaRow[]) {
    const versions = JSON.parse(row.versions) as CnaVersion[];
    if (!cnaAffects(k.upstream, row.default_status, versions)) continue;
    seen.add(row.cve);
    out.push(base(row.cve, cnaFixedIn(k.upstream, versions), "kernel-cna"));
  }
  const streams = new Map<string, Map<string, string>>();
  for (const r of db.db.prepare("SELECT cve, branch, fixed_version FROM kernel_streams").all() as {
    cve: string;
    branch: string;
    fixed_version: string;
  }[]) {
    const m = streams.get(r.cve) ?? new Map<string, string>();
    m.set(r.branch, r.fixed_version);
    streams.set(r.cve, m);
  }
  const mainline = new Map(
    (
      db.db.prepare("SELECT cve, introduced, fixed FROM kernel_mainline").all() as {
        cve: string;
        introduced: string | null;
        fixed: string | null;
      }[]
    ).map((r) => [r.cve, r]),
  );
  for (const cve of new Set([...streams.keys(), ...mainline.keys()])) {
    if (seen.has(cve)) continue;
    const r = streamAffects(k.upstream, streams.get(cve) ?? new Map(), mainline.get(cve));
    if (r.affected) out.push(base(cve, r.fixedIn, "kernel-streams"));
  }
  return out;
}

/**
 * A Debian kernel is judged by Debian's data for the linux source wherever Debian has a verdict on a
 * CVE for the release (its fixed version, not-affected, no-dsa...): Debian backports fixes, so the
 * upstream version of a Debian kernel says little. Upstream ranges decide only the CVEs Debian's data
 * does not mention. Other kernels are judged by upstream ranges alone.
 */
function matchKernels(db: AdvisoryDb, inv: Inventory, release: string): Finding[] {
  const out: Finding[] = [];
  const rowsOf = debianRows(db);
  for (const k of inv.kernels) {
    const upstream = matchUpstreamKernel(db, k);
    if (!(k.package && k.packageVersion && release)) {
      out.push(...upstream);
      continue;
    }
    const rows = rowsOf("linux", release);
    const debianSpeaks = new Set(rows.map((r) => r.vuln_id));
    out.push(
      ...findingsFromRows(
        rows,
        k.packageVersion,
        { package: k.package, source: "linux", installed: k.packageVersion },
        { kernel: { release: k.release, running: k.running, upstream: k.upstream } },
      ),
      ...upstream.filter((f) => !debianSpeaks.has(f.vulnId)),
    );
  }
  return out;
}

export function enrich(db: AdvisoryDb, findings: Finding[]): Finding[] {
  const info = vulnInfo(
    db,
    findings.map((f) => f.vulnId),
  );
  return findings.map((f) => {
    const v = info.get(f.vulnId);
    if (!v) return f;
    const cvss = v.cvss ?? undefined;
    // A distribution's own rating wins; CVSS (from the CNA or OSV) fills in where it has none.
    const severity =
      f.severity !== "UNKNOWN" ? f.severity : v.severity ? (v.severity as Severity) : severityFromCvss(cvss);
    return { ...f, title: v.title ?? undefined, description: v.description ?? undefined, cvss, severity };
  });
}

/**
 * Findings that a Berth Security Advisory fixes (same CVE and source package, the installed version
 * below the advisory's fixed version) get the advisory and the Berth releases or images it is fixed in.
 */
export function withBerthFixes(db: AdvisoryDb, findings: Finding[], release: string): Finding[] {
  const rows = db.db
    .prepare(
      `SELECT a.vuln_id, a.package, a.fixed_version, a.advisory, b.fixed_releases, b.fixed_images
       FROM advisories a JOIN berth_advisories b ON b.id = a.advisory
       WHERE a.source = 'berth-advisories' AND a.release = ?`,
    )
    .all(release) as {
    vuln_id: string;
    package: string;
    fixed_version: string;
    advisory: string;
    fixed_releases: string;
    fixed_images: string;
  }[];
  if (!rows.length) return findings;
  const by = new Map(rows.map((r) => [`${r.vuln_id} ${r.package}`, r]));
  return findings.map((f) => {
    const r = by.get(`${f.vulnId} ${f.source}`);
    const installed = f.sourceVersion ?? f.installed;
    if (!r || !installed || compareVersions(installed, r.fixed_version) >= 0) return f;
    return {
      ...f,
      berthFix: {
        advisory: r.advisory,
        releases: JSON.parse(r.fixed_releases) as string[],
        images: JSON.parse(r.fixed_images) as string[],
      },
    };
  });
}

export interface MatchOptions {
  /** Override the release codename (default: the target's os-release). */
  release?: string;
}

export function matchInventory(db: AdvisoryDb, inv: Inventory, o: MatchOptions = {}): Finding[] {
  const release = o.release ?? inv.os?.codename ?? "";
  const findings = [
    ...(release ? matchDebianPackages(db, inv.packages, release) : []),
    ...matchKernels(db, inv, release),
  ];
  return withBerthFixes(db, enrich(db, findings), release).sort(
    (a, b) =>
      Number(b.status === "fixed") - Number(a.status === "fixed") ||
      severityRank(b.severity) - severityRank(a.severity) ||
      (a.package < b.package ? -1 : a.package > b.package ? 1 : 0) ||
      (a.vulnId < b.vulnId ? -1 : 1),
  );
}
