// Rollouts: one kind of job taken across the fleet in waves, a bounded number of nodes at a time, paused
// by itself when too many fail. Everything is in the database, and a tick only moves a rollout forward
// from what the database says, so a restarted server (or any other process, under the rollouts lease)
// carries on where the last one stopped.

import { createHash, randomUUID } from "node:crypto";
import type { CreateRolloutRequest, JobKind, JobParams, Rollout, RolloutState, Wave } from "./api-schemas.ts";
import { type FleetContext, iso, parseJson } from "./context.ts";
import { createJob } from "./jobs.ts";
import { filterSql, type NodeFilter } from "./nodes.ts";
import type { Sql } from "./sql.ts";

interface RolloutRow {
  id: string;
  name: string;
  kind: string;
  params: string;
  waves: string;
  max_concurrent: number;
  failure_threshold: number;
  min_finished: number;
  selector: string;
  state: string;
  reason: string | null;
  created_at: number;
  updated_at: number;
}

/** A node's place in a rollout's order: stable, and different from one rollout to the next. */
export const rolloutRank = (rolloutId: string, nodeId: string): string =>
  createHash("sha256").update(`${rolloutId}\n${nodeId}`).digest("hex");

/** How many of `targets` nodes the waves open at `now` (pure). */
export function reachedBy(waves: Wave[], targets: number, now: number): number {
  let percent = 0;
  for (const w of waves) {
    const start = w.startAt ? Date.parse(w.startAt) : 0;
    if (!(start > now)) percent = Math.max(percent, w.percent);
  }
  return Math.min(targets, Math.ceil((percent / 100) * targets));
}

/** Whether a rollout has failed too often to go on (pure). */
export function overThreshold(
  failed: number,
  succeeded: number,
  threshold: number,
  minFinished: number,
): boolean {
  const finished = failed + succeeded;
  return finished >= Math.max(1, minFinished) && failed > 0 && failed / finished >= threshold;
}

async function targetsOf(ctx: FleetContext, sql: Sql, r: RolloutRow): Promise<{ nid: number; id: string }[]> {
  const { where, params } = await filterSql(ctx, sql, parseJson<NodeFilter>(r.selector, {}));
  const rows = await sql.all<{ nid: number; id: string }>(
    `SELECT n.nid, n.id FROM nodes n ${where.length ? `WHERE ${where.join(" AND ")}` : ""}`,
    params,
  );
  return rows
    .map((n) => ({ nid: Number(n.nid), id: n.id, rank: rolloutRank(r.id, n.id) }))
    .sort((a, b) => (a.rank < b.rank ? -1 : 1));
}

async function progressOf(sql: Sql, id: string) {
  const rows = await sql.all<{ state: string; n: number }>(
    "SELECT state, count(*) AS n FROM jobs WHERE rollout_id = ? GROUP BY state",
    [id],
  );
  const c = (s: string) => Number(rows.find((r) => r.state === s)?.n ?? 0);
  return {
    queued: c("queued"),
    running: c("sent") + c("running"),
    succeeded: c("succeeded"),
    failed: c("failed"),
  };
}

async function rolloutFromRow(ctx: FleetContext, sql: Sql, r: RolloutRow): Promise<Rollout> {
  const p = await progressOf(sql, r.id);
  const waves = parseJson<Wave[]>(r.waves, []);
  const targets = (await targetsOf(ctx, sql, r)).length;
  const out: Rollout = {
    id: r.id,
    name: r.name,
    kind: r.kind as JobKind,
    params: parseJson<JobParams>(r.params, {}),
    waves,
    maxConcurrent: Number(r.max_concurrent),
    failureThreshold: Number(r.failure_threshold),
    minFinished: Number(r.min_finished),
    selector: parseJson<unknown>(r.selector, {}),
    state: r.state as RolloutState,
    createdAt: iso(r.created_at)!,
    updatedAt: iso(r.updated_at)!,
    progress: { targets, reached: reachedBy(waves, targets, ctx.now()), ...p },
  };
  if (r.reason) out.reason = r.reason;
  return out;
}

const COLUMNS =
  "id, name, kind, params, waves, max_concurrent, failure_threshold, min_finished, selector, state, reason, created_at, updated_at";

export async function createRollout(ctx: FleetContext, sql: Sql, req: CreateRolloutRequest): Promise<string> {
  const id = randomUUID();
  const now = ctx.now();
  await sql.run(
    `INSERT INTO rollouts (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', NULL, ?, ?)`,
    [
      id,
      req.name,
      req.kind,
      JSON.stringify(req.params ?? {}),
      JSON.stringify(req.waves),
      req.maxConcurrent,
      req.failureThreshold,
      req.minFinished ?? 1,
      JSON.stringify(req.selector ?? {}),
      now,
      now,
    ],
  );
  return id;
}

export async function getRollout(ctx: FleetContext, id: string): Promise<Rollout | undefined> {
  const row = await ctx.db.get<RolloutRow>(`SELECT ${COLUMNS} FROM rollouts WHERE id = ?`, [id]);
  return row ? rolloutFromRow(ctx, ctx.db, row) : undefined;
}

export async function listRollouts(ctx: FleetContext): Promise<Rollout[]> {
  const rows = await ctx.db.all<RolloutRow>(
    `SELECT ${COLUMNS} FROM rollouts ORDER BY created_at DESC, id LIMIT 200`,
  );
  const out: Rollout[] = [];
  for (const r of rows) out.push(await rolloutFromRow(ctx, ctx.db, r));
  return out;
}

/** pause / resume / stop; returns false when the rollout is not in a state that allows it. */
export async function setRolloutState(
  ctx: FleetContext,
  sql: Sql,
  id: string,
  action: "pause" | "resume" | "stop",
  reason?: string,
): Promise<"ok" | "missing" | "conflict"> {
  const row = await sql.get<{ state: string }>("SELECT state FROM rollouts WHERE id = ?", [id]);
  if (!row) return "missing";
  const from: Record<typeof action, string[]> = {
    pause: ["running", "paused"],
    resume: ["paused", "running"],
    stop: ["running", "paused", "stopped"],
  };
  if (!from[action].includes(row.state)) return "conflict";
  const to = action === "pause" ? "paused" : action === "resume" ? "running" : "stopped";
  await sql.run("UPDATE rollouts SET state = ?, reason = ?, updated_at = ? WHERE id = ?", [
    to,
    reason ?? null,
    ctx.now(),
    id,
  ]);
  return "ok";
}

/** Takes or renews a named lease for this process; false when another process holds it. */
export async function takeLease(ctx: FleetContext, name: string, ms: number): Promise<boolean> {
  const now = ctx.now();
  const n = await ctx.db.run(
    `INSERT INTO leases (name, owner, until) VALUES (?, ?, ?)
     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
     WHERE leases.owner = excluded.owner OR leases.until < ?`,
    [name, ctx.owner, now + ms, now],
  );
  return n === 1;
}

export async function releaseLease(ctx: FleetContext, name: string): Promise<void> {
  await ctx.db.run("DELETE FROM leases WHERE name = ? AND owner = ?", [name, ctx.owner]);
}

export async function fleetStopped(sql: Sql): Promise<boolean> {
  return (await sql.get<{ value: string }>("SELECT value FROM meta WHERE key = 'stopped'"))?.value === "true";
}

/** Moves every running rollout forward once. Returns the number of jobs it queued. */
export async function tickRollouts(ctx: FleetContext): Promise<number> {
  if (!(await takeLease(ctx, "rollouts", 15_000))) return 0;
  if (await fleetStopped(ctx.db)) return 0;
  let queued = 0;
  const rows = await ctx.db.all<RolloutRow>(`SELECT ${COLUMNS} FROM rollouts WHERE state = 'running'`);
  for (const r of rows) {
    queued += await ctx.db.tx(async (tx) => {
      const p = await progressOf(tx, r.id);
      if (overThreshold(p.failed, p.succeeded, Number(r.failure_threshold), Number(r.min_finished))) {
        const finished = p.failed + p.succeeded;
        await tx.run(
          "UPDATE rollouts SET state = 'paused', reason = ?, updated_at = ? WHERE id = ? AND state = 'running'",
          [
            `paused by itself: ${p.failed} of ${finished} finished jobs failed (threshold ${Math.round(Number(r.failure_threshold) * 100)}%)`,
            ctx.now(),
            r.id,
          ],
        );
        return 0;
      }
      const targets = await targetsOf(ctx, tx, r);
      const reached = reachedBy(parseJson<Wave[]>(r.waves, []), targets.length, ctx.now());
      const have = new Set(
        (await tx.all<{ nid: number }>("SELECT DISTINCT nid FROM jobs WHERE rollout_id = ?", [r.id])).map(
          (j) => Number(j.nid),
        ),
      );
      const slots = Number(r.max_concurrent) - p.queued - p.running;
      let made = 0;
      for (const t of targets.slice(0, reached)) {
        if (made >= slots) break;
        if (have.has(t.nid)) continue;
        await createJob(ctx, tx, t, r.kind as JobKind, parseJson<JobParams>(r.params, {}), r.id);
        made++;
      }
      const done = targets.length > 0 && targets.every((t) => have.has(t.nid));
      if (done && made === 0 && p.queued + p.running === 0 && reached === targets.length)
        await tx.run("UPDATE rollouts SET state = 'completed', updated_at = ? WHERE id = ?", [
          ctx.now(),
          r.id,
        ]);
      return made;
    });
  }
  return queued;
}
