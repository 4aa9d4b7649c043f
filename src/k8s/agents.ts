// What the operator needs from the nodes' agents, whoever carries the message: find the agent of a
// Kubernetes Node, ask it to apply something, and read how that went. The fleet server implements it
// (fleet-agents.ts); the pure rules for turning an agent's report into "done", "wait" or "failed" live
// here, so every implementation judges a node the same way.

import type { JobKind, JobParams, JobState, UpdateStateName } from "../server/api-schemas.ts";
import type { PlanSettings } from "./plan.ts";

/** A node as its agent last reported it. */
export interface AgentView {
  /** The fleet server's node id. */
  id: string;
  hostname: string;
  online: boolean;
  /** The running release. */
  release: string | null;
  updateState: UpdateStateName;
  /** Why the update state is what it is (a rollback's or failure's reason). */
  reason?: string;
  /** The last update attempt: version, when (server clock) and the result. */
  lastAttempt?: { version: string; at: string; result: string; reason?: string } | null;
  /** Names of live patches applied. */
  patches: string[];
  harden?: { profile: string; score: number } | null;
}

export interface JobView {
  id: string;
  state: JobState;
  error?: string;
  createdAt: string;
}

export interface Work {
  kind: JobKind;
  params: JobParams;
}

/** How a Kubernetes Node is known to the fleet: by the fleet id annotation, else by hostname. */
export interface NodeIdentity {
  name: string;
  hostname: string;
  fleetId?: string;
}

export interface NodeAgents {
  /** The agent that reports for this Node, or undefined when none does. */
  find(node: NodeIdentity): Promise<AgentView | undefined>;
  get(id: string): Promise<AgentView>;
  /** Gives the node work; resolves to the job's id. */
  start(id: string, work: Work): Promise<string>;
  job(id: string): Promise<JobView>;
}

/** The job a plan gives each node. Waves are the fleet server's pacing; the plan paces itself. */
export function workFor(s: PlanSettings): Work {
  const repository = s.repository ? { repository: s.repository } : {};
  switch (s.kind) {
    case "os-release":
      return {
        kind: "update-apply",
        params: { version: s.name, reboot: s.reboot, ignoreWaves: true, ...repository },
      };
    case "live-patch":
      return { kind: "patch-apply", params: { name: s.name, patchKind: s.livePatchKind, ...repository } };
    case "hardening":
      return { kind: "harden-apply", params: { name: s.name } };
  }
}

/** True when the agent already reports the plan's target, so the node needs no work. */
export function alreadyDone(s: PlanSettings, a: AgentView): boolean {
  switch (s.kind) {
    case "os-release":
      return a.release === s.name && a.updateState === "good";
    case "live-patch":
      return a.patches.includes(s.name);
    case "hardening":
      return false; // a profile can be re-applied; only the job says it was
  }
}

/** An update is under way on the node (an apply, or the reboot after it): wait rather than start another. */
export function updateInFlight(a: AgentView): boolean {
  return a.updateState === "downloading" || a.updateState === "applied" || a.updateState === "rebooting";
}

export type Outcome = { done: true; release?: string } | { done: false; failed?: string; waiting: string };

/**
 * Where a node stands once its job was given. An OS release is done when the node runs it and its
 * health check passed ("good"): the job itself may never report, the reboot ends it. A rollback or a
 * failure counts only once the agent has acted on this job, so an older attempt's state is not blamed
 * on this one.
 */
export function outcome(s: PlanSettings, a: AgentView, job: JobView | undefined): Outcome {
  // The agent has acted on the job (it says so, or its last attempt is newer than the job).
  const fresh =
    !job ||
    job.state === "running" ||
    job.state === "succeeded" ||
    job.state === "failed" ||
    (!!a.lastAttempt && Date.parse(a.lastAttempt.at) >= Date.parse(job.createdAt));
  if (s.kind === "os-release") {
    if (a.release === s.name && a.updateState === "good") return { done: true, release: a.release };
    if (fresh && a.updateState === "rolled-back")
      return {
        done: false,
        failed: `rolled back to ${a.release ?? "the old release"}: ${a.reason ?? a.lastAttempt?.reason ?? "no reason given"}`,
        waiting: "",
      };
    if (fresh && a.updateState === "failed")
      return {
        done: false,
        failed: `update failed: ${a.reason ?? a.lastAttempt?.reason ?? "no reason given"}`,
        waiting: "",
      };
    if (job?.state === "failed")
      return { done: false, failed: `job failed: ${job.error ?? "no error given"}`, waiting: "" };
    return {
      done: false,
      waiting: `agent: ${a.updateState}${a.online ? "" : " (offline)"}, running ${a.release ?? "?"}`,
    };
  }
  if (!job) return { done: false, waiting: "no job" };
  if (job.state === "succeeded") return { done: true, release: a.release ?? undefined };
  if (job.state === "failed")
    return { done: false, failed: `job failed: ${job.error ?? "no error given"}`, waiting: "" };
  return { done: false, waiting: `job ${job.state}` };
}
