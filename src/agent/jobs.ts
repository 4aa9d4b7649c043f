// Carrying out the server's work. Each job is recorded in STATE/jobs/ID.json before it starts, so a job
// is never run twice (the server may hand it out again after a lost answer) and a job cut short by a
// reboot or a kill is reported with what became of it. Results wait on disk until the server has them.

import type { Job, JobParams } from "../server/api-schemas.ts";
import { berthJson, type CommandResult, errorOf } from "./berth-command.ts";
import type { AgentState } from "./state.ts";

export interface JobRecord {
  id: string;
  kind: Job["kind"];
  params: JobParams;
  /** started: running or cut short; rebooting: waiting for the node to come back; done: finished. */
  phase: "started" | "rebooting" | "done";
  startedAt: string;
  outcome?: { state: "succeeded" | "failed"; result?: unknown; error?: string };
  reported: boolean;
}

const jobFile = (id: string) => `jobs/${id.replace(/[^A-Za-z0-9_-]/g, "_")}.json`;

export function readJob(state: AgentState, id: string): JobRecord | undefined {
  return state.readJson<JobRecord>(jobFile(id));
}

export async function writeJob(state: AgentState, r: JobRecord): Promise<void> {
  await state.writeJson(jobFile(r.id), r);
}

export function jobRecords(state: AgentState): JobRecord[] {
  return state
    .list("jobs")
    .map((f) => state.readJson<JobRecord>(`jobs/${f}`))
    .filter((r): r is JobRecord => !!r);
}

/** The `berth` command line for a job, or undefined for work the agent does itself (rescan). */
export function commandFor(job: Pick<Job, "kind" | "params">, repository?: string): string[] | undefined {
  const p = job.params;
  const repo = p.repository ?? repository;
  const need = (v: string | undefined, what: string) => {
    if (!v) throw new Error(`${job.kind} needs ${what}`);
    return v;
  };
  switch (job.kind) {
    case "update-apply":
      return [
        "update",
        "apply",
        ...(p.version ? ["--version", p.version] : []),
        ...(p.ignoreWaves ? ["--ignore-waves"] : []),
        ...(p.repository ? ["--repository", p.repository] : []),
        "--json",
      ];
    case "update-rollback":
      return ["update", "rollback", "--json"];
    case "patch-apply":
      return p.patchKind === "kernel"
        ? [
            "patch",
            "kernel",
            "load",
            "--from-repo",
            need(repo, "a repository"),
            need(p.name, "a patch name"),
            "--json",
          ]
        : [
            "patch",
            "lib",
            "apply",
            "--from-repo",
            need(repo, "a repository"),
            need(p.name, "a patch name"),
            "--all",
            "--json",
          ];
    case "patch-rollback":
      return p.patchKind === "kernel"
        ? ["patch", "kernel", "disable", need(p.name, "a patch name"), "--remove", "--json"]
        : ["patch", "lib", "rollback", "--all", "--json"];
    case "harden-apply":
      return ["harden", "apply", "--profile", p.name ?? "security-mode", "--json"];
    case "harden-rollback":
      return ["harden", "rollback", "--json"];
    case "rescan":
      return undefined;
  }
}

export interface JobHooks {
  /** Tells the server a job started. */
  started(job: Job): Promise<void>;
  /** A fresh inventory and hardening check (rescan, and after any change). */
  rescan(): Promise<void>;
  /** The node is about to reboot for this job: report that, then reboot. */
  reboot(job: Job): Promise<void>;
  repository?: string;
  run?: (args: string[], timeoutMs: number) => Promise<CommandResult>;
}

const TIMEOUT_MS = 60 * 60_000;

/** Runs one job to its outcome (a reboot job returns with phase "rebooting"). */
export async function runJob(state: AgentState, job: Job, hooks: JobHooks): Promise<JobRecord> {
  const record: JobRecord = {
    id: job.id,
    kind: job.kind,
    params: job.params,
    phase: "started",
    startedAt: new Date().toISOString(),
    reported: false,
  };
  await writeJob(state, record);
  await hooks.started(job).catch(() => {});
  const finish = async (outcome: JobRecord["outcome"]) => {
    record.phase = "done";
    record.outcome = outcome;
    await writeJob(state, record);
    return record;
  };
  let args: string[] | undefined;
  try {
    args = commandFor(job, hooks.repository);
  } catch (e) {
    return finish({ state: "failed", error: (e as Error).message });
  }
  if (!args) {
    await hooks.rescan();
    return finish({ state: "succeeded", result: { rescanned: true } });
  }
  const r = await (hooks.run ?? berthJson)(args, TIMEOUT_MS);
  if (r.code !== 0) {
    await hooks.rescan().catch(() => {});
    return finish({
      state: "failed",
      error: errorOf(r),
      ...(r.json !== undefined ? { result: r.json } : {}),
    });
  }
  if ((job.kind === "update-apply" || job.kind === "update-rollback") && job.params.reboot) {
    record.phase = "rebooting";
    record.outcome = { state: "succeeded", result: r.json ?? null };
    await writeJob(state, record);
    await hooks.reboot(job);
    return record;
  }
  await hooks.rescan().catch(() => {});
  return finish({ state: "succeeded", result: r.json ?? null });
}

/**
 * A job found on disk at start-up that never finished: a reboot job is judged by the release the node
 * came back on; anything else was cut short.
 */
export function resolveInterrupted(
  r: JobRecord,
  booted: { release: string | null; updateState: string },
): JobRecord["outcome"] {
  if (r.phase === "rebooting") {
    if (r.kind === "update-apply") {
      const want = r.params.version;
      const ok = booted.updateState !== "rolled-back" && (!want || booted.release === want);
      return ok
        ? { state: "succeeded", result: { release: booted.release } }
        : {
            state: "failed",
            error: `the node came back on ${booted.release ?? "an unknown release"}${booted.updateState === "rolled-back" ? " (rolled back)" : ""}`,
          };
    }
    return { state: "succeeded", result: { release: booted.release } };
  }
  return { state: "failed", error: "the agent stopped before the job finished" };
}
