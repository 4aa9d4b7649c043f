// Scan output: a table grouped by package (fixable first) with a summary line, JSON, SARIF 2.1.0 for
// code-scanning consumers, and CycloneDX 1.6 (via @cyclonedx/cyclonedx-library) with vulnerabilities.

import * as CDX from "@cyclonedx/cyclonedx-library";
import { PackageURL } from "packageurl-js";
import { renderTable } from "../common/format.ts";
import { sarifLog } from "../common/sarif.ts";
import { SEVERITIES, type Severity, severityRank } from "../db/severity.ts";
import type { Inventory } from "./inventory.ts";
import type { Finding } from "./match.ts";

export interface ScanResult {
  target: string;
  kind: Inventory["kind"];
  os?: Inventory["os"];
  kernels: Inventory["kernels"];
  packages: number;
  layers?: Inventory["layers"];
  findings: Finding[];
  summary: Summary;
  database: { path: string; sources: { name: string; imported_at: string; records: number }[] };
}

export interface Summary {
  total: number;
  fixable: number;
  bySeverity: Record<Severity, number>;
  packages: number;
}

export function summarize(findings: Finding[], packages: number): Summary {
  const bySeverity = Object.fromEntries(SEVERITIES.map((s) => [s, 0])) as Record<Severity, number>;
  for (const f of findings) bySeverity[f.severity]++;
  return {
    total: findings.length,
    fixable: findings.filter((f) => f.status === "fixed").length,
    bySeverity,
    packages,
  };
}

export function summaryLine(s: Summary): string {
  const parts = [...SEVERITIES]
    .reverse()
    .filter((k) => s.bySeverity[k])
    .map((k) => `${k}: ${s.bySeverity[k]}`);
  return `${s.total} vulnerabilities (${s.fixable} fixable) in ${s.packages} packages${parts.length ? ` — ${parts.join(", ")}` : ""}`;
}

const STATUS_TEXT: Record<Finding["status"], string> = {
  fixed: "fixed in",
  "no-fix-yet": "no fix yet",
  "will-not-fix": "won't fix",
  "fix-deferred": "fix deferred",
  "end-of-life": "end of life",
  undetermined: "undetermined",
};

export function renderFindings(r: ScanResult): string {
  const lines: string[] = [];
  const os = r.os
    ? `${r.os.prettyName ?? r.os.id}${r.os.codename ? ` (${r.os.codename})` : ""}`
    : "unknown OS";
  lines.push(`${r.target}: ${os}, ${r.packages} packages${r.layers ? `, ${r.layers.length} layers` : ""}`);
  for (const k of r.kernels)
    lines.push(
      `kernel ${k.release}${k.running ? " (running)" : ""}${k.package ? ` from ${k.package} ${k.packageVersion}` : k.upstream ? ` (upstream ${k.upstream})` : ""}`,
    );
  if (r.findings.length) {
    lines.push("");
    lines.push(
      renderTable(
        ["package", "installed", "fixed", "vulnerability", "severity", "status", "layer"],
        r.findings.map((f) => [
          f.package,
          f.installed,
          f.fixedVersion ?? "",
          f.vulnId,
          f.severity,
          f.berthFix
            ? `fixed in ${f.berthFix.releases.length ? `Berth ${f.berthFix.releases.join(", ")}` : f.berthFix.images.join(", ") || "Berth"} (${f.berthFix.advisory})`
            : f.status === "fixed"
              ? "fixable"
              : STATUS_TEXT[f.status],
          f.layer ? String(f.layer.index) : "",
        ]),
      ),
    );
  }
  lines.push("", summaryLine(r.summary));
  return lines.join("\n");
}

function sarifLevel(s: Severity): "error" | "warning" | "note" | "none" {
  return severityRank(s) >= severityRank("HIGH")
    ? "error"
    : severityRank(s) >= severityRank("MEDIUM")
      ? "warning"
      : "note";
}

/** SARIF 2.1.0: one rule per vulnerability, one result per (vulnerability, package). */
export function toSarif(r: ScanResult, toolVersion: string): unknown {
  const rules = new Map<string, Finding>();
  for (const f of r.findings) if (!rules.has(f.vulnId)) rules.set(f.vulnId, f);
  return sarifLog(
    {
      tool: "berth",
      informationUri: "https://github.com/berth-os/berth",
      rules: [...rules.values()].map((f) => ({
        id: f.vulnId,
        shortDescription: f.title ?? f.vulnId,
        fullDescription: f.description ?? f.title ?? f.vulnId,
        helpUri: f.vulnId.startsWith("CVE-")
          ? `https://security-tracker.debian.org/tracker/${f.vulnId}`
          : undefined,
        properties: {
          "security-severity": f.cvss !== undefined ? String(f.cvss) : undefined,
          tags: ["security", "vulnerability"],
          severity: f.severity,
        },
      })),
      results: r.findings.map((f) => ({
        ruleId: f.vulnId,
        level: sarifLevel(f.severity),
        message: `${f.package} ${f.installed} is affected by ${f.vulnId} (${f.severity})${f.fixedVersion ? `; fixed in ${f.fixedVersion}` : `; ${STATUS_TEXT[f.status]}`}`,
        locations: [
          {
            physicalLocation: { artifactLocation: { uri: f.kernel ? "kernel" : "var/lib/dpkg/status" } },
            logicalLocations: [{ name: f.package, kind: "package" }],
          },
        ],
        properties: {
          package: f.package,
          source: f.source,
          installed: f.installed,
          fixedVersion: f.fixedVersion,
          status: f.status,
          dataSource: f.dataSource,
          layer: f.layer?.diffId,
        },
      })),
    },
    toolVersion,
  );
}

const CDX_SEVERITY: Record<Severity, CDX.Enums.Vulnerability.Severity> = {
  CRITICAL: CDX.Enums.Vulnerability.Severity.Critical,
  HIGH: CDX.Enums.Vulnerability.Severity.High,
  MEDIUM: CDX.Enums.Vulnerability.Severity.Medium,
  LOW: CDX.Enums.Vulnerability.Severity.Low,
  NEGLIGIBLE: CDX.Enums.Vulnerability.Severity.Info,
  UNKNOWN: CDX.Enums.Vulnerability.Severity.Unknown,
};

export function purlOf(name: string, version: string, arch: string, os: Inventory["os"]): string {
  const qualifiers: Record<string, string> = { arch: arch || "all" };
  if (os?.versionId) qualifiers.distro = `${os.id}-${os.versionId}`;
  return new PackageURL(
    "deb",
    os?.id === "ubuntu" ? "ubuntu" : "debian",
    name,
    version,
    qualifiers,
    undefined,
  ).toString();
}

/** CycloneDX 1.6 JSON: components for every package, vulnerabilities with affects, ratings and analysis. */
export function toCycloneDx(r: ScanResult, inv: Inventory, toolVersion: string): string {
  const bom = new CDX.Models.Bom();
  const root = new CDX.Models.Component(
    r.kind === "host" || r.kind === "rootfs" || r.kind === "berth-image"
      ? CDX.Enums.ComponentType.OperatingSystem
      : CDX.Enums.ComponentType.Container,
    r.target,
  );
  bom.metadata.component = root;
  bom.metadata.tools.components.add(
    new CDX.Models.Component(CDX.Enums.ComponentType.Application, "berth", { version: toolVersion }),
  );
  const refs = new Map<string, CDX.Models.Component>();
  for (const p of inv.packages) {
    if (p.status !== "installed") continue;
    const purl = purlOf(p.name, p.version, p.architecture, inv.os);
    if (refs.has(purl)) continue;
    const c = new CDX.Models.Component(CDX.Enums.ComponentType.Library, p.name, {
      version: p.version,
      bomRef: purl,
      purl,
    });
    if (p.source !== p.name)
      c.properties.add(new CDX.Models.Property("berth:source", `${p.source} ${p.sourceVersion}`));
    refs.set(purl, c);
    bom.components.add(c);
  }
  const byVuln = new Map<string, Finding[]>();
  for (const f of r.findings) byVuln.set(f.vulnId, [...(byVuln.get(f.vulnId) ?? []), f]);
  for (const [id, fs] of byVuln) {
    const f = fs[0]!;
    const v = new CDX.Models.Vulnerability.Vulnerability({
      bomRef: `vuln:${id}`,
      id,
      source: new CDX.Models.Vulnerability.Source({
        name: f.dataSource,
        url: id.startsWith("CVE-") ? new URL(`https://security-tracker.debian.org/tracker/${id}`) : undefined,
      }),
      description: f.description ?? f.title,
    });
    v.ratings.add(
      new CDX.Models.Vulnerability.Rating({
        severity: CDX_SEVERITY[f.severity],
        score: f.cvss,
        method:
          f.cvss !== undefined
            ? CDX.Enums.Vulnerability.RatingMethod.CVSSv31
            : CDX.Enums.Vulnerability.RatingMethod.Other,
      }),
    );
    for (const x of fs) {
      const arch = inv.packages.find((p) => p.name === x.package)?.architecture ?? "amd64";
      const ref = purlOf(x.package, x.installed, arch, inv.os);
      const comp = refs.get(ref);
      if (comp) v.affects.add(new CDX.Models.Vulnerability.Affect(comp.bomRef));
    }
    if (f.fixedVersion)
      v.recommendation = `Upgrade ${fs.map((x) => x.package).join(", ")} to ${f.fixedVersion} or later.`;
    v.analysis = new CDX.Models.Vulnerability.Analysis({
      state: CDX.Enums.Vulnerability.AnalysisState.Exploitable,
      detail: STATUS_TEXT[f.status],
    });
    if (f.status === "will-not-fix")
      v.analysis.response.add(CDX.Enums.Vulnerability.AnalysisResponse.WillNotFix);
    if (f.status === "fixed") v.analysis.response.add(CDX.Enums.Vulnerability.AnalysisResponse.Update);
    bom.vulnerabilities.add(v);
  }
  const serializer = new CDX.Serialize.JsonSerializer(
    new CDX.Serialize.JSON.Normalize.Factory(CDX.Spec.Spec1dot6),
  );
  return serializer.serialize(bom, { sortLists: true, space: 2 });
}
