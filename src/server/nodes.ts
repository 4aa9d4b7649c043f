// Nodes as the API shows them: one row per node with its counts, filters that the console and the
// operator use, pages by cursor (hostname, id) so that 10,000 hosts are never loaded at once.

import { compareVersions } from "../pkg/version.ts";
import type {
  Container,
  FindingCounts,
  Kernel,
  LivePatch,
  Node,
  NodeDetail,
  NodeFinding,
  NodePage,
  NodeQuery,
  OsInfo,
  Package,
  UpdateStatus,
} from "./api-schemas.ts";
import { type FleetContext, iso, onlineCutoff, parseJson } from "./context.ts";
import { listJobs } from "./jobs.ts";
import type { Param, Sql } from "./sql.ts";

export interface NodeRow {
  nid: number;
  id: string;
  hostname: string;
  enrolled_at: number;
  last_seen: number | null;
  seq: number;
  release: string | null;
  kernel: string | null;
  os: string | null;
  update_status: string | null;
  update_state: string;
  harden_profile: string | null;
  harden_score: number | null;
  patches: string;
  n_packages: number;
  n_containers: number;
  f_critical: number;
  f_high: number;
  f_medium: number;
  f_low: number;
  f_negligible: number;
  f_unknown: number;
  f_total: number;
  harden_failing: number | null;
}

export const NODE_COLUMNS = `n.nid, n.id, n.hostname, n.enrolled_at, n.last_seen, n.seq, n.release, n.kernel, n.os,
  n.update_status, n.update_state, n.harden_profile, n.harden_score, n.patches, n.n_packages, n.n_containers,
  n.f_critical, n.f_high, n.f_medium, n.f_low, n.f_negligible, n.f_unknown, n.f_total,
  (SELECT count(*) FROM node_harden_failing h WHERE h.nid = n.nid) AS harden_failing`;

const IDLE: UpdateStatus = { state: "idle", booted: null, slots: [], lastAttempt: null };

export function nodeFromRow(ctx: FleetContext, r: NodeRow): Node {
  const findings: FindingCounts = {
    critical: Number(r.f_critical),
    high: Number(r.f_high),
    medium: Number(r.f_medium),
    low: Number(r.f_low),
    negligible: Number(r.f_negligible),
    unknown: Number(r.f_unknown),
    total: Number(r.f_total),
  };
  return {
    id: r.id,
    hostname: r.hostname,
    online: r.last_seen !== null && Number(r.last_seen) >= onlineCutoff(ctx),
    lastSeen: iso(r.last_seen),
    enrolledAt: iso(r.enrolled_at)!,
    release: r.release,
    kernel: r.kernel,
    os: parseJson<OsInfo | null>(r.os, null),
    update: parseJson<UpdateStatus>(r.update_status, IDLE),
    harden:
      r.harden_score === null || r.harden_profile === null
        ? null
        : {
            profile: r.harden_profile,
            score: Number(r.harden_score),
            failing: Number(r.harden_failing ?? 0),
          },
    findings,
    packages: Number(r.n_packages),
    containers: Number(r.n_containers),
    patches: parseJson<LivePatch[]>(r.patches, []),
    seq: Number(r.seq),
  };
}

export type NodeFilter = Omit<NodeQuery, "limit" | "cursor"> & { search?: string };

/** The WHERE clause and parameters for a filter (also a rollout's selector). */
export async function filterSql(
  ctx: FleetContext,
  sql: Sql,
  f: NodeFilter,
): Promise<{ where: string[]; params: Param[] }> {
  const where: string[] = [];
  const params: Param[] = [];
  const add = (clause: string, ...p: Param[]) => {
    where.push(clause);
    params.push(...p);
  };
  if (f.hostname !== undefined) add("n.hostname = ?", f.hostname);
  if (f.search) add("n.hostname LIKE ?", `%${f.search.replace(/[%_]/g, "")}%`);
  if (f.online === true) add("n.last_seen >= ?", onlineCutoff(ctx));
  if (f.online === false) add("(n.last_seen IS NULL OR n.last_seen < ?)", onlineCutoff(ctx));
  if (f.release !== undefined) add("n.release = ?", f.release);
  if (f.kernel !== undefined) add("n.kernel = ?", f.kernel);
  if (f.updateState !== undefined) add("n.update_state = ?", f.updateState);
  if (f.scoreBelow !== undefined) add("n.harden_score < ?", f.scoreBelow);
  if (f.patch !== undefined) add("n.nid IN (SELECT p.nid FROM node_patches p WHERE p.name = ?)", f.patch);
  if (f.cve !== undefined)
    add(
      `n.nid IN (SELECT np.nid FROM pkg_findings pf JOIN node_pkgs np ON np.pkg_id = pf.pkg_id WHERE pf.vuln_id = ?
        UNION SELECT nk.nid FROM kernel_findings kf JOIN node_kernels nk ON nk.kernel_id = kf.kernel_id WHERE kf.vuln_id = ?)`,
      f.cve,
      f.cve,
    );
  if (f.package !== undefined) {
    let ids = (
      await sql.all<{ id: number; version: string }>("SELECT id, version FROM pkgs WHERE name = ?", [
        f.package,
      ])
    )
      .filter((r) => !f.versionBelow || compareVersions(r.version, f.versionBelow) < 0)
      .map((r) => Number(r.id));
    if (ids.length > 5000) ids = ids.slice(0, 5000);
    if (!ids.length) where.push("1 = 0");
    else
      add(
        `n.nid IN (SELECT np.nid FROM node_pkgs np WHERE np.pkg_id IN (${ids.map(() => "?").join(", ")}))`,
        ...ids,
      );
  }
  return { where, params };
}

const encodeCursor = (hostname: string, id: string) =>
  Buffer.from(JSON.stringify([hostname, id])).toString("base64url");
function decodeCursor(c: string): [string, string] | undefined {
  try {
    const v = JSON.parse(Buffer.from(c, "base64url").toString("utf8")) as unknown;
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === "string" && typeof v[1] === "string")
      return [v[0], v[1]];
  } catch {}
  return undefined;
}

export class QueryError extends Error {}

export async function listNodes(ctx: FleetContext, q: NodeQuery & { search?: string }): Promise<NodePage> {
  const sql = ctx.db;
  const { where, params } = await filterSql(ctx, sql, q);
  const limit = q.limit ?? 100;
  const total = await sql.get<{ n: number }>(
    `SELECT count(*) AS n FROM nodes n ${where.length ? `WHERE ${where.join(" AND ")}` : ""}`,
    params,
  );
  const pageWhere = [...where];
  const pageParams = [...params];
  if (q.cursor) {
    const c = decodeCursor(q.cursor);
    if (!c) throw new QueryError("cursor is not one this server gave");
    pageWhere.push("(n.hostname > ? OR (n.hostname = ? AND n.id > ?))");
    pageParams.push(c[0], c[0], c[1]);
  }
  const rows = await sql.all<NodeRow>(
    `SELECT ${NODE_COLUMNS} FROM nodes n ${pageWhere.length ? `WHERE ${pageWhere.join(" AND ")}` : ""}
     ORDER BY n.hostname, n.id LIMIT ?`,
    [...pageParams, limit + 1],
  );
  const more = rows.length > limit;
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    nodes: page.map((r) => nodeFromRow(ctx, r)),
    total: Number(total?.n ?? 0),
    ...(more && last ? { next: encodeCursor(last.hostname, last.id) } : {}),
  };
}

export async function nodeRow(sql: Sql, id: string): Promise<NodeRow | undefined> {
  return sql.get<NodeRow>(`SELECT ${NODE_COLUMNS} FROM nodes n WHERE n.id = ?`, [id]);
}

export async function getNode(ctx: FleetContext, id: string): Promise<Node | undefined> {
  const row = await nodeRow(ctx.db, id);
  return row ? nodeFromRow(ctx, row) : undefined;
}

/** Every finding of a node: its packages' and its kernels'. */
export async function nodeFindings(sql: Sql, nid: number): Promise<NodeFinding[]> {
  const pk = await sql.all<{
    vuln_id: string;
    name: string;
    source: string;
    version: string;
    fixed_version: string | null;
    status: string;
    severity: string;
    title: string | null;
    data_source: string;
  }>(
    `SELECT f.vuln_id, p.name, p.source, p.version, f.fixed_version, f.status, f.severity, v.title, f.data_source
     FROM node_pkgs np JOIN pkgs p ON p.id = np.pkg_id JOIN pkg_findings f ON f.pkg_id = np.pkg_id
     LEFT JOIN vulns v ON v.vuln_id = f.vuln_id WHERE np.nid = ?`,
    [nid],
  );
  const kf = await sql.all<{
    vuln_id: string;
    package: string;
    installed: string;
    fixed_version: string | null;
    status: string;
    severity: string;
    title: string | null;
    data_source: string;
  }>(
    `SELECT f.vuln_id, f.package, f.installed, f.fixed_version, f.status, f.severity, v.title, f.data_source
     FROM node_kernels nk JOIN kernel_findings f ON f.kernel_id = nk.kernel_id
     LEFT JOIN vulns v ON v.vuln_id = f.vuln_id WHERE nk.nid = ?`,
    [nid],
  );
  const out: NodeFinding[] = [
    ...pk.map((r) => ({
      vulnId: r.vuln_id,
      package: r.name,
      source: r.source,
      installed: r.version,
      ...(r.fixed_version ? { fixedVersion: r.fixed_version } : {}),
      status: r.status,
      severity: r.severity,
      ...(r.title ? { title: r.title } : {}),
      dataSource: r.data_source,
    })),
    ...kf.map((r) => ({
      vulnId: r.vuln_id,
      package: r.package,
      source: "linux",
      installed: r.installed,
      ...(r.fixed_version ? { fixedVersion: r.fixed_version } : {}),
      status: r.status,
      severity: r.severity,
      ...(r.title ? { title: r.title } : {}),
      dataSource: r.data_source,
      kernel: true,
    })),
  ];
  return out.sort((a, b) =>
    a.vulnId < b.vulnId ? -1 : a.vulnId > b.vulnId ? 1 : a.package < b.package ? -1 : 1,
  );
}

export async function nodeDetail(ctx: FleetContext, id: string): Promise<NodeDetail | undefined> {
  const row = await nodeRow(ctx.db, id);
  if (!row) return undefined;
  const nid = Number(row.nid);
  const packages = (
    await ctx.db.all<{
      name: string;
      version: string;
      architecture: string;
      status: string;
      source: string;
      source_version: string;
    }>(
      "SELECT p.name, p.version, p.architecture, p.status, p.source, p.source_version FROM node_pkgs np JOIN pkgs p ON p.id = np.pkg_id WHERE np.nid = ? ORDER BY p.name, p.architecture",
      [nid],
    )
  ).map(
    (p): Package => ({
      name: p.name,
      version: p.version,
      architecture: p.architecture,
      status: p.status,
      source: p.source,
      sourceVersion: p.source_version,
    }),
  );
  const containers = (
    await ctx.db.all<{ id: string; name: string; image: string; image_id: string; state: string }>(
      "SELECT id, name, image, image_id, state FROM node_containers WHERE nid = ? ORDER BY name, id",
      [nid],
    )
  ).map((c): Container => ({ id: c.id, name: c.name, image: c.image, imageId: c.image_id, state: c.state }));
  const kernelsRow = await ctx.db.get<{ kernels: string }>("SELECT kernels FROM nodes WHERE nid = ?", [nid]);
  const failing = await ctx.db.all<{ rule_id: string }>(
    "SELECT rule_id FROM node_harden_failing WHERE nid = ? ORDER BY rule_id",
    [nid],
  );
  return {
    node: nodeFromRow(ctx, row),
    packages,
    kernels: parseJson<Kernel[]>(kernelsRow?.kernels, []),
    containers,
    findings: await nodeFindings(ctx.db, nid),
    hardenFailing: failing.map((f) => f.rule_id),
    jobs: await listJobs(ctx.db, { nodeId: id, limit: 100 }),
  };
}
