// An UpdatePlan's status from what the operator knows: per-node phases, the counts the kubectl columns
// show, the plan's phase and message, and conditions in the Kubernetes style (a condition keeps its
// lastTransitionTime until its status changes). Pure: the operator writes what this returns.

import type { Condition, NodeStatus, PlanPhase, UpdatePlanStatus } from "./plan.ts";

export type PauseReason = "Spec" | "FailureBudgetExceeded" | "DrainBlocked" | "FleetStopped";

export interface PlanFacts {
  generation: number;
  target: string;
  /** Set when the spec is not valid: nothing runs. */
  invalid?: string;
  nodes: NodeStatus[];
  paused: boolean;
  pause?: { reason: PauseReason; message: string };
  windowOpen: boolean;
  nextWindow?: Date;
  /** Set while delayBetweenNodes holds the next start back. */
  nextStartAt?: Date;
  failureBudget: number;
  acknowledgedFailures: number;
  lastNodeTransitionAt?: Date;
  previous: Condition[];
  now: Date;
}

const IN_PROGRESS = new Set(["Draining", "Updating", "Verifying"]);

export function countPhases(nodes: readonly NodeStatus[]) {
  const c = {
    total: nodes.length,
    pending: 0,
    inProgress: 0,
    succeeded: 0,
    failed: 0,
    skipped: 0,
    blocked: 0,
  };
  for (const n of nodes) {
    if (n.phase === "Pending") c.pending++;
    else if (IN_PROGRESS.has(n.phase)) c.inProgress++;
    else if (n.phase === "Succeeded") c.succeeded++;
    else if (n.phase === "Failed") c.failed++;
    else if (n.phase === "Skipped") c.skipped++;
    else if (n.phase === "Blocked") c.blocked++;
  }
  return c;
}

/** The failures the budget is measured against: those since the plan was last resumed. */
export function failuresOverBudget(
  nodes: readonly NodeStatus[],
  budget: number,
  acknowledged: number,
): boolean {
  return countPhases(nodes).failed - acknowledged > budget;
}

/** "n3 (rolled back to 2026.12.1: health check failed), n7 (...)" */
export function failureList(nodes: readonly NodeStatus[]): string {
  return nodes
    .filter((n) => n.phase === "Failed")
    .map((n) => `${n.name} (${n.message ?? "failed"})`)
    .join(", ");
}

function condition(
  previous: Condition[],
  now: Date,
  type: string,
  on: boolean,
  reason: string,
  message: string,
): Condition {
  const status = on ? "True" : "False";
  const old = previous.find((c) => c.type === type);
  const lastTransitionTime = old && old.status === status ? old.lastTransitionTime : now.toISOString();
  return message
    ? { type, status, reason, message, lastTransitionTime }
    : { type, status, reason, lastTransitionTime };
}

export function buildStatus(f: PlanFacts): UpdatePlanStatus {
  const c = countPhases(f.nodes);
  const blockedNodes = f.nodes.filter((n) => n.blockedBy && n.blockedSince);
  const blockText = blockedNodes
    .map((n) => `${n.name}: blocked by PDB ${n.blockedBy} since ${n.blockedSince}`)
    .join("; ");
  const overBudget = failuresOverBudget(f.nodes, f.failureBudget, f.acknowledgedFailures);
  const complete = c.total > 0 && c.succeeded + c.failed + c.skipped === c.total;

  let phase: PlanPhase;
  let message: string;
  if (f.invalid) {
    phase = "Pending";
    message = `invalid spec: ${f.invalid}`;
  } else if (complete) {
    phase = "Completed";
    message = `${c.succeeded} updated, ${c.failed} failed, ${c.skipped} skipped`;
  } else if (f.paused) {
    phase = "Paused";
    message = f.pause?.message ?? "paused (spec.paused)";
  } else if (c.total === 0) {
    phase = "Pending";
    message = "no Node matches the selector";
  } else if (blockText) {
    phase = "Progressing";
    message = blockText;
  } else if (c.inProgress > 0) {
    phase = "Progressing";
    message = `${c.inProgress} in progress, ${c.succeeded}/${c.total} updated`;
  } else if (!f.windowOpen) {
    phase = "Waiting";
    message = `outside the maintenance windows${f.nextWindow ? `; the next opens at ${f.nextWindow.toISOString()}` : ""}`;
  } else if (f.nextStartAt && f.nextStartAt > f.now) {
    phase = "Waiting";
    message = `next node at ${f.nextStartAt.toISOString()} (delayBetweenNodes)`;
  } else {
    phase = "Progressing";
    message = `${c.succeeded}/${c.total} updated`;
  }

  const p = f.previous;
  const conditions: Condition[] = [
    condition(p, f.now, "Progressing", phase === "Progressing" || phase === "Waiting", phase, message),
    condition(
      p,
      f.now,
      "Paused",
      phase === "Paused",
      f.paused ? (f.pause?.reason ?? "Spec") : "NotPaused",
      f.paused ? message : "",
    ),
    condition(
      p,
      f.now,
      "DrainBlocked",
      blockedNodes.length > 0,
      blockedNodes.length ? "PodDisruptionBudget" : "NotBlocked",
      blockText,
    ),
    condition(
      p,
      f.now,
      "FailureBudgetExceeded",
      overBudget,
      overBudget ? "TooManyFailures" : "WithinBudget",
      c.failed
        ? `${c.failed} failed (budget ${f.failureBudget}, ${f.acknowledgedFailures} acknowledged): ${failureList(f.nodes)}`
        : "",
    ),
    condition(
      p,
      f.now,
      "Complete",
      phase === "Completed",
      phase === "Completed" ? "AllNodesDone" : "NotDone",
      phase === "Completed" ? message : "",
    ),
  ];
  if (f.invalid) conditions.push(condition(p, f.now, "Invalid", true, "InvalidSpec", f.invalid));

  return {
    observedGeneration: f.generation,
    ...(f.target ? { target: f.target } : {}),
    phase,
    message,
    ...c,
    acknowledgedFailures: f.acknowledgedFailures,
    ...(f.lastNodeTransitionAt ? { lastNodeTransitionAt: f.lastNodeTransitionAt.toISOString() } : {}),
    nodes: f.nodes,
    conditions,
  };
}
