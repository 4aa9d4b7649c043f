// A Berth Security Advisory as an OSV record, and the Markdown summary in the style of Debian's DSA
// mails. Pure.

import type { BsaBerthFields } from "../db/importers/berth-advisories.ts";
import { severityRank } from "../db/severity.ts";
import type { SourceChange } from "./compare.ts";
import type { CveFix } from "./fixes.ts";
import type { Release } from "./release.ts";

const DEBIAN_MAJOR: Record<string, string> = { bullseye: "11", bookworm: "12", trixie: "13", forky: "14" };

export interface Bsa {
  id: string;
  change: SourceChange;
  fixes: CveFix[];
  severity: string;
  older: Release;
  newer: Release;
  codename: string;
  published: string;
}

export function severityOf(fixes: CveFix[]): string {
  let best = "UNKNOWN";
  for (const f of fixes) if (f.severity && severityRank(f.severity) > severityRank(best)) best = f.severity;
  return best;
}

const releaseName = (r: Release) => r.version ?? r.digest ?? r.path;

export function toOsv(b: Bsa): Record<string, unknown> {
  const cves = b.fixes.map((f) => f.cve);
  const berth: BsaBerthFields = {
    release: b.codename,
    affected_releases: b.older.kind === "os" && b.older.version ? [b.older.version] : [],
    fixed_releases: b.newer.kind === "os" && b.newer.version ? [b.newer.version] : [],
    affected_images: b.older.kind === "image" && b.older.digest ? [b.older.digest] : [],
    fixed_images: b.newer.kind === "image" && b.newer.digest ? [b.newer.digest] : [],
    severity: b.severity,
  };
  const major = DEBIAN_MAJOR[b.codename];
  return {
    schema_version: "1.6.0",
    id: b.id,
    modified: b.published,
    published: b.published,
    related: cves,
    summary: `${b.change.source}: security update`,
    details: detailsText(b),
    affected: [
      {
        package: {
          ecosystem: major ? `Debian:${major}` : "Debian",
          name: b.change.source,
          purl: `pkg:deb/debian/${b.change.source}?distro=${b.codename}`,
        },
        ranges: [{ type: "ECOSYSTEM", events: [{ introduced: "0" }, { fixed: b.change.to! }] }],
        versions: [b.change.from!],
        ecosystem_specific: { binaries: b.change.binaries },
        database_specific: {
          cves: Object.fromEntries(b.fixes.map((f) => [f.cve, { fixed_in: f.fixedIn, sources: f.sources }])),
        },
      },
    ],
    references: cves.map((c) => ({
      type: "ADVISORY",
      url: `https://security-tracker.debian.org/tracker/${c}`,
    })),
    database_specific: { berth },
  };
}

function detailsText(b: Bsa): string {
  const lines = [
    `${b.change.source} ${b.change.from} in ${releaseName(b.older)} is affected by ${b.fixes.length} ${b.fixes.length === 1 ? "vulnerability" : "vulnerabilities"}, fixed in ${b.change.to} in ${releaseName(b.newer)}.`,
    "",
  ];
  for (const f of b.fixes)
    lines.push(`${f.cve}${f.description ? `: ${f.description.replace(/\s+/g, " ").slice(0, 300)}` : ""}`);
  return lines.join("\n");
}

const wrap = (text: string, width = 72) => {
  const out: string[] = [];
  let line = "";
  for (const w of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + w.length > width) {
      out.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) out.push(line);
  return out.join("\n");
};

/** One DSA-style section per advisory, then the changes that are not security fixes. */
export function toMarkdown(bsas: Bsa[], others: SourceChange[], older: Release, newer: Release): string {
  const rule = "-".repeat(72);
  const parts = [`# Berth Security Advisories: ${releaseName(older)} to ${releaseName(newer)}`, ""];
  for (const b of bsas) {
    parts.push(
      "```",
      rule,
      `Berth Security Advisory ${b.id}`.padEnd(56) + "berth".padStart(16),
      b.published.slice(0, 10),
      rule,
      "",
      `Package        : ${b.change.source}`,
      wrap(`CVE ID         : ${b.fixes.map((f) => f.cve).join(" ")}`, 72),
      `Severity       : ${b.severity}`,
      "```",
      "",
    );
    for (const f of b.fixes)
      parts.push(`- **${f.cve}**${f.description ? `: ${wrap(f.description, 70).replace(/\n/g, " ")}` : ""}`);
    parts.push(
      "",
      wrap(
        `For ${releaseName(b.older)} (Debian ${b.codename}), these problems have been fixed in ${releaseName(b.newer)}, with ${b.change.source} version ${b.change.to} (was ${b.change.from}).`,
      ),
      "",
      wrap(
        `We recommend that you upgrade to ${releaseName(b.newer)}${b.newer.kind === "os" ? " (berth update)" : ""}. Binary packages: ${b.change.binaries.join(", ")}.`,
      ),
      "",
    );
  }
  if (others.length) {
    parts.push("## Other changes", "");
    for (const c of others)
      parts.push(
        `- ${c.source}: ${c.kind}${c.from ? ` from ${c.from}` : ""}${c.to ? ` to ${c.to}` : ""} (${c.binaries.join(", ")})`,
      );
    parts.push("");
  }
  return parts.join("\n");
}
