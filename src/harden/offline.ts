// Hardening a root that is being built (berth os build with `hardening:` in the profile): the same
// rules, guards and planner as `berth harden apply`, journaled into the build's work directory.

import { profileNamed, runRules, score } from "./engine.ts";
import { Facts } from "./facts.ts";
import { applyPlan } from "./journal.ts";
import { planFixes } from "./plan.ts";

export interface OfflineHardening {
  profile: string;
  scoreBefore: number;
  scoreAfter: number;
  /** Rules whose fixes changed the root. */
  applied: string[];
  refused: { id: string; reason: string }[];
  files: string[];
}

export function hardenRoot(root: string, profileName: string, stateDir: string): OfflineHardening {
  const profile = profileNamed(profileName);
  if (!profile) throw new Error(`unknown hardening profile ${profileName}`);
  const facts = new Facts({ kind: "root", label: root, root });
  const outcomes = runRules(facts, profile);
  const { plan, refused } = planFixes(facts, outcomes, profile);
  if (plan.edits.length)
    applyPlan(plan, { target: root, kind: "root", root, profile: profile.name, live: false }, stateDir);
  const after = score(runRules(new Facts({ kind: "root", label: root, root }), profile)).score;
  return {
    profile: profile.name,
    scoreBefore: score(outcomes).score,
    scoreAfter: after,
    applied: [...new Set(plan.edits.flatMap((e) => e.rules))].sort(),
    refused,
    files: plan.edits.map((e) => e.path),
  };
}
