// Work for nodes: queued by an administrator, the operator or a rollout; handed to the node's agent
// (state "sent") on its next report or poll; carried out and reported back by the agent.

import { randomUUID } from "node:crypto";
import type { Job, JobKind, JobParams, JobState, JobUpdate } from "./api-schemas.ts";
import { type FleetContext, iso, parseJson } from "./context.ts";
import type { Sql } from "./sql.ts";

interface JobRow {
  id: string;
  nid: number;
  node_id: string;
  kind: string;
  params: string;
  state: string;
  result: string | null;
  error: string | null;
  rollout_id: string | null;
  created_at: number;
  updated_at: number;
}

export const JOB_COLUMNS =
  "j.id, j.nid, j.node_id, j.kind, j.params, j.state, j.result, j.error, j.rollout_id, j.created_at, j.updated_at";

export function jobFromRow(r: JobRow): Job {
  const job: Job = {
    id: r.id,
    nodeId: r.node_id,
    kind: r.kind as JobKind,
    params: parseJson<JobParams>(r.params, {}),
    state: r.state as JobState,
    createdAt: iso(r.created_at)!,
    updatedAt: iso(r.updated_at)!,
  };
  if (r.result !== null) job.result = parseJson<unknown>(r.result, null);
  if (r.error !== null) job.error = r.error;
  if (r.rollout_id) job.rolloutId = r.rollout_id;
  return job;
}

export async function createJob(
  ctx: FleetContext,
  tx: Sql,
  node: { nid: number; id: string },
  kind: JobKind,
  params: JobParams,
  rolloutId?: string,
): Promise<string> {
  const id = randomUUID();
  const now = ctx.now();
  await tx.run(
    "INSERT INTO jobs (id, nid, node_id, kind, params, state, rollout_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
    [id, node.nid, node.id, kind, JSON.stringify(params), rolloutId ?? null, now, now],
  );
  return id;
}

export async function getJob(sql: Sql, id: string): Promise<Job | undefined> {
  const row = await sql.get<JobRow>(`SELECT ${JOB_COLUMNS} FROM jobs j WHERE j.id = ?`, [id]);
  return row ? jobFromRow(row) : undefined;
}

export async function listJobs(
  sql: Sql,
  f: { nodeId?: string; state?: string; rolloutId?: string; limit?: number },
): Promise<Job[]> {
  const where: string[] = [];
  const params: (string | number)[] = [];
  if (f.nodeId) {
    where.push("j.node_id = ?");
    params.push(f.nodeId);
  }
  if (f.state) {
    where.push("j.state = ?");
    params.push(f.state);
  }
  if (f.rolloutId) {
    where.push("j.rollout_id = ?");
    params.push(f.rolloutId);
  }
  params.push(f.limit ?? 200);
  const rows = await sql.all<JobRow>(
    `SELECT ${JOB_COLUMNS} FROM jobs j ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY j.created_at DESC, j.id LIMIT ?`,
    params,
  );
  return rows.map(jobFromRow);
}

/**
 * The node's work: queued jobs become "sent"; jobs sent before and not yet started come again (the
 * answer that carried them may have been lost; the agent keeps its own record and never runs one twice).
 * Jobs of a rollout that is not running, or while the global stop switch is on, stay queued.
 */
export async function takeJobsForNode(ctx: FleetContext, tx: Sql, nid: number): Promise<Job[]> {
  const stopped = await tx.get<{ value: string }>("SELECT value FROM meta WHERE key = 'stopped'");
  const halt = stopped?.value === "true";
  const rows = await tx.all<JobRow>(
    `SELECT ${JOB_COLUMNS} FROM jobs j LEFT JOIN rollouts r ON r.id = j.rollout_id
     WHERE j.nid = ? AND (j.state = 'sent' OR (j.state = 'queued' AND (j.rollout_id IS NULL OR (r.state = 'running' AND ? = 0))))
     ORDER BY j.created_at, j.id`,
    [nid, halt ? 1 : 0],
  );
  const queued = rows.filter((r) => r.state === "queued");
  if (queued.length) {
    const now = ctx.now();
    for (const r of queued) {
      await tx.run("UPDATE jobs SET state = 'sent', updated_at = ? WHERE id = ? AND state = 'queued'", [
        now,
        r.id,
      ]);
      r.state = "sent";
      r.updated_at = now;
    }
  }
  return rows.map(jobFromRow);
}

const FINAL = new Set(["succeeded", "failed"]);

/** The agent's word on one of its jobs; 404 for a job that is not this node's. */
export async function updateJobFromAgent(
  ctx: FleetContext,
  nid: number,
  id: string,
  u: JobUpdate,
  first: (tx: Sql) => Promise<void> = async () => {},
): Promise<{ status: 200 | 404 | 409; job?: Job; error?: string }> {
  return ctx.db.tx(async (tx) => {
    await first(tx);
    const lock = tx.dialect === "postgres" ? " FOR UPDATE" : "";
    const row = await tx.get<JobRow>(`SELECT ${JOB_COLUMNS} FROM jobs j WHERE j.id = ?${lock}`, [id]);
    if (!row || Number(row.nid) !== nid) return { status: 404, error: `no job ${id} for this node` };
    if (FINAL.has(row.state)) {
      if (row.state === u.state) return { status: 200, job: jobFromRow(row) };
      return { status: 409, error: `job ${id} already ${row.state}` };
    }
    if (row.state === "running" && u.state === "running") return { status: 200, job: jobFromRow(row) };
    const now = ctx.now();
    await tx.run("UPDATE jobs SET state = ?, result = ?, error = ?, updated_at = ? WHERE id = ?", [
      u.state,
      u.result === undefined ? null : JSON.stringify(u.result),
      u.error ?? null,
      now,
      id,
    ]);
    return { status: 200, job: (await getJob(tx, id))! };
  });
}
