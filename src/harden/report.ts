// Assessment output: grouped text with advice for people, JSON for machines, SARIF 2.1.0 for code
// scanning dashboards.

import { sarifLog } from "../common/sarif.ts";
import type { RuleOutcome, ScoreSummary } from "./engine.ts";
import type { RuleSeverity } from "./rule.ts";

export interface Assessment {
  target: string;
  kind: string;
  profile: string;
  summary: ScoreSummary;
  seconds: number;
  files: number;
  results: {
    id: string;
    title: string;
    category: string;
    severity: RuleSeverity;
    status: string;
    evidence?: string;
    items?: string[];
    advice: string;
    fixable: boolean;
    refs: string[];
    containerNote?: string;
  }[];
}

export function toAssessment(
  target: string,
  kind: string,
  profile: string,
  outcomes: RuleOutcome[],
  summary: ScoreSummary,
  seconds: number,
  files: number,
): Assessment {
  return {
    target,
    kind,
    profile,
    summary,
    seconds,
    files,
    results: outcomes.map(({ rule, result }) => ({
      id: rule.id,
      title: rule.title,
      category: rule.category,
      severity: rule.severity,
      status: result.status,
      evidence: result.evidence,
      items: result.items,
      advice: rule.advice,
      fixable: !!rule.fix,
      refs: rule.refs,
      containerNote: rule.containerNote,
    })),
  };
}

const SEV_ORDER: RuleSeverity[] = ["critical", "high", "medium", "low", "info"];

export function renderAssessment(a: Assessment, verbose: boolean): string {
  const lines: string[] = [`${a.target}: score ${a.summary.score}/100 (${a.profile})`, ""];
  const failed = a.results.filter((r) => r.status === "fail");
  const byCategory = new Map<string, typeof failed>();
  for (const r of failed) byCategory.set(r.category, [...(byCategory.get(r.category) ?? []), r]);
  for (const [cat, rs] of byCategory) {
    lines.push(`${cat} (${rs.length} failed)`);
    rs.sort((x, y) => SEV_ORDER.indexOf(x.severity) - SEV_ORDER.indexOf(y.severity));
    for (const r of rs) {
      lines.push(`  ✗ ${r.severity.toUpperCase().padEnd(8)} ${r.id}  ${r.title}`);
      if (r.evidence) lines.push(`      ${r.evidence}`);
      for (const i of (r.items ?? []).slice(0, verbose ? 1000 : 5)) lines.push(`        ${i}`);
      if ((r.items?.length ?? 0) > 5 && !verbose)
        lines.push(`        … ${r.items!.length - 5} more (--verbose)`);
      lines.push(`      fix: ${r.advice}${r.fixable ? "  [berth harden apply]" : ""}`);
    }
    lines.push("");
  }
  const s = a.summary;
  const sev = SEV_ORDER.filter((k) => s.failedBySeverity[k]).map((k) => `${k} ${s.failedBySeverity[k]}`);
  lines.push(
    `${s.rules} rules: ${s.passed} passed, ${s.failed} failed${sev.length ? ` (${sev.join(", ")})` : ""}, ${s.notApplicable} not applicable; ${a.files} files walked in ${a.seconds.toFixed(2)} s`,
  );
  return lines.join("\n");
}

const level = (s: RuleSeverity) =>
  s === "critical" || s === "high" ? "error" : s === "medium" ? "warning" : "note";

export function assessmentToSarif(a: Assessment, version: string): unknown {
  const failed = a.results.filter((r) => r.status === "fail");
  const rules = new Map(failed.map((r) => [r.id, r]));
  return sarifLog(
    {
      tool: "berth-harden",
      rules: [...rules.values()].map((r) => ({
        id: r.id,
        shortDescription: r.title,
        help: r.advice,
        properties: {
          tags: ["security", "configuration", r.category],
          severity: r.severity,
          references: r.refs,
        },
      })),
      results: failed.map((r) => ({
        ruleId: r.id,
        level: level(r.severity),
        message: `${r.title}: ${r.evidence ?? "failed"}`,
        locations: [{ logicalLocations: [{ name: a.target, kind: "resource" }] }],
        properties: { items: r.items, category: r.category },
      })),
      properties: { score: a.summary.score, target: a.target },
    },
    version,
  );
}
