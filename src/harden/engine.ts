// Running rules against a target's facts, and the score: the share of applicable rules that pass,
// each weighted by its severity.

import type { Facts } from "./facts.ts";
import { type CheckResult, RULE_SEVERITIES, type Rule, type RuleSeverity } from "./rule.ts";
import { RULES } from "./rules/index.ts";

export interface RuleOutcome {
  rule: Rule;
  result: CheckResult;
}

export const WEIGHT: Record<RuleSeverity, number> = { critical: 10, high: 6, medium: 3, low: 1, info: 0 };

export interface Profile {
  name: string;
  description: string;
  /** Rules scored by check. */
  rules: (r: Rule) => boolean;
  /** Rules whose fixes apply runs. */
  fixes: (r: Rule) => boolean;
}

export const PROFILES: Profile[] = [
  {
    name: "security-mode",
    description: "every rule; apply fixes everything that has a safe fix",
    rules: () => true,
    fixes: (r) => !!r.fix,
  },
  {
    name: "essential",
    description: "every rule; apply fixes only critical, high and medium findings",
    rules: () => true,
    fixes: (r) => !!r.fix && ["critical", "high", "medium"].includes(r.severity),
  },
  {
    name: "docker",
    description: "the container engine, containers and images only",
    rules: (r) => ["docker daemon", "containers", "images"].includes(r.category),
    fixes: (r) => !!r.fix && ["docker daemon", "containers", "images"].includes(r.category),
  },
];

export function profileNamed(name: string): Profile | undefined {
  return PROFILES.find((p) => p.name === name);
}

export function runRules(f: Facts, profile: Profile, rules: Rule[] = RULES): RuleOutcome[] {
  return rules
    .filter((r) => r.targets.includes(f.kind) && profile.rules(r))
    .map((rule) => {
      let result: CheckResult;
      try {
        result = rule.check(f);
      } catch (e) {
        // A rule that cannot read what it needs says so instead of stopping the assessment.
        result = { status: "na", evidence: `could not check: ${(e as Error).message.split("\n")[0]}` };
      }
      return { rule, result };
    });
}

export interface ScoreSummary {
  score: number;
  rules: number;
  passed: number;
  failed: number;
  notApplicable: number;
  failedBySeverity: Record<RuleSeverity, number>;
}

export function score(outcomes: RuleOutcome[]): ScoreSummary {
  let total = 0;
  let got = 0;
  const failedBySeverity = Object.fromEntries(RULE_SEVERITIES.map((s) => [s, 0])) as Record<
    RuleSeverity,
    number
  >;
  for (const o of outcomes) {
    if (o.result.status === "na") continue;
    const w = WEIGHT[o.rule.severity];
    total += w;
    if (o.result.status === "pass") got += w;
    else failedBySeverity[o.rule.severity]++;
  }
  return {
    score: total ? Math.floor((100 * got) / total) : 100,
    rules: outcomes.length,
    passed: outcomes.filter((o) => o.result.status === "pass").length,
    failed: outcomes.filter((o) => o.result.status === "fail").length,
    notApplicable: outcomes.filter((o) => o.result.status === "na").length,
    failedBySeverity,
  };
}
