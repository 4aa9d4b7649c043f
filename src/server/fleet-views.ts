// Fleet-wide answers for the console: posture over time (kept as snapshots, which is the history Fleet
// lacks), the vulnerabilities on the most hosts, rule pass rates, software search and advisories.

import { SEVERITIES } from "../db/severity.ts";
import { compareVersions } from "../pkg/version.ts";
import { type FleetContext, iso, onlineCutoff, parseJson } from "./context.ts";
import { fleetStopped } from "./rollouts.ts";

/** Appends one point to the vulnerability and hardening histories. */
export async function recordHistory(ctx: FleetContext): Promise<void> {
  const at = ctx.now();
  const v = await ctx.db.get<Record<string, number | null>>(
    "SELECT sum(f_critical) AS critical, sum(f_high) AS high, sum(f_medium) AS medium, sum(f_low) AS low, sum(f_negligible) AS negligible, sum(f_unknown) AS unknown FROM nodes",
  );
  const h = await ctx.db.get<{ average: number | null; hosts: number }>(
    "SELECT avg(harden_score) AS average, count(harden_score) AS hosts FROM nodes",
  );
  await ctx.db.tx(async (tx) => {
    await tx.run(
      "INSERT INTO vuln_history (at, critical, high, medium, low, negligible, unknown) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (at) DO NOTHING",
      [at, ...["critical", "high", "medium", "low", "negligible", "unknown"].map((k) => Number(v?.[k] ?? 0))],
    );
    await tx.run(
      "INSERT INTO harden_history (at, average, hosts) VALUES (?, ?, ?) ON CONFLICT (at) DO NOTHING",
      [at, Number(h?.average ?? 0), Number(h?.hosts ?? 0)],
    );
  });
}

export async function fleetStatus(ctx: FleetContext) {
  const n = await ctx.db.get<{ nodes: number; online: number; containers: number | null }>(
    "SELECT count(*) AS nodes, sum(CASE WHEN last_seen >= ? THEN 1 ELSE 0 END) AS online, sum(n_containers) AS containers FROM nodes",
    [onlineCutoff(ctx)],
  );
  const ev = parseJson<{ generation: string; at: number; seconds?: number; packages?: number } | null>(
    (await ctx.db.get<{ value: string }>("SELECT value FROM meta WHERE key = 'evaluated'"))?.value,
    null,
  );
  return {
    nodes: Number(n?.nodes ?? 0),
    online: Number(n?.online ?? 0),
    containers: Number(n?.containers ?? 0),
    advisoryDb: {
      generation: ctx.matcher.generation,
      evaluatedAt: iso(ev?.at),
      evaluatedGeneration: ev?.generation ?? null,
      seconds: ev?.seconds ?? null,
      packages: ev?.packages ?? null,
      ...(ctx.matcher.error ? { error: ctx.matcher.error } : {}),
    },
    stopped: await fleetStopped(ctx.db),
  };
}

export async function vulnHistory(ctx: FleetContext, limit = 500) {
  const rows = await ctx.db.all<Record<string, number>>(
    "SELECT at, critical, high, medium, low, negligible, unknown FROM vuln_history ORDER BY at DESC LIMIT ?",
    [limit],
  );
  return {
    points: rows.reverse().map((r) => ({
      at: iso(r.at)!,
      critical: Number(r.critical),
      high: Number(r.high),
      medium: Number(r.medium),
      low: Number(r.low),
      negligible: Number(r.negligible),
      unknown: Number(r.unknown),
    })),
  };
}

/** A severity's place in SEVERITIES, in SQL, so that max() picks the worst. */
const SEVERITY_RANK_SQL = `CASE x.severity ${SEVERITIES.map((s, i) => `WHEN '${s}' THEN ${i}`).join(" ")} ELSE 0 END`;

export async function topVulns(ctx: FleetContext, limit = 20) {
  const rows = await ctx.db.all<{
    vuln_id: string;
    srank: number;
    hosts: number;
    fixable: number;
    title: string | null;
  }>(
    `SELECT x.vuln_id, max(${SEVERITY_RANK_SQL}) AS srank, count(DISTINCT x.nid) AS hosts, max(x.fixable) AS fixable, max(v.title) AS title FROM (
       SELECT f.vuln_id, f.severity, np.nid, CASE WHEN f.status = 'fixed' THEN 1 ELSE 0 END AS fixable
         FROM pkg_findings f JOIN node_pkgs np ON np.pkg_id = f.pkg_id
       UNION ALL
       SELECT kf.vuln_id, kf.severity, nk.nid, CASE WHEN kf.status = 'fixed' THEN 1 ELSE 0 END AS fixable
         FROM kernel_findings kf JOIN node_kernels nk ON nk.kernel_id = kf.kernel_id
     ) x LEFT JOIN vulns v ON v.vuln_id = x.vuln_id
     GROUP BY x.vuln_id ORDER BY hosts DESC, x.vuln_id LIMIT ?`,
    [limit],
  );
  return {
    vulns: rows.map((r) => ({
      vulnId: r.vuln_id,
      severity: SEVERITIES[Number(r.srank)] ?? "UNKNOWN",
      ...(r.title ? { title: r.title } : {}),
      hosts: Number(r.hosts),
      fixable: Number(r.fixable) === 1,
    })),
  };
}

export async function hardening(ctx: FleetContext) {
  const hosts = Number(
    (await ctx.db.get<{ n: number }>("SELECT count(*) AS n FROM nodes WHERE harden_score IS NOT NULL"))?.n ??
      0,
  );
  const rules = await ctx.db.all<{ rule_id: string; n: number }>(
    "SELECT rule_id, count(*) AS n FROM node_harden_failing GROUP BY rule_id ORDER BY n DESC, rule_id",
  );
  const history = await ctx.db.all<{ at: number; average: number; hosts: number }>(
    "SELECT at, average, hosts FROM harden_history ORDER BY at DESC LIMIT 500",
  );
  return {
    hosts,
    rules: rules.map((r) => ({
      id: r.rule_id,
      failing: Number(r.n),
      passRate: hosts ? 1 - Number(r.n) / hosts : 1,
    })),
    history: history
      .reverse()
      .map((h) => ({ at: iso(h.at)!, averageScore: Number(h.average), hosts: Number(h.hosts) })),
  };
}

/** "Which hosts run openssl older than X": the versions in the fleet, with how many hosts each. */
export async function software(ctx: FleetContext, name: string, versionBelow?: string) {
  const rows = await ctx.db.all<{ name: string; version: string; hosts: number }>(
    `SELECT p.name, p.version, count(DISTINCT np.nid) AS hosts FROM pkgs p JOIN node_pkgs np ON np.pkg_id = p.id
     WHERE p.name = ? GROUP BY p.name, p.version`,
    [name],
  );
  return {
    versions: rows
      .filter((r) => !versionBelow || compareVersions(r.version, versionBelow) < 0)
      .sort((a, b) => compareVersions(a.version, b.version))
      .map((r) => ({ name: r.name, version: r.version, hosts: Number(r.hosts) })),
  };
}

/** Advisories (BSA, DSA, DLA) that name vulnerabilities found in the fleet, with the hosts they affect. */
export async function advisories(ctx: FleetContext, limit = 200) {
  const rows = await ctx.db.all<{ advisory: string; vuln_id: string; severity: string; nid: number }>(
    `SELECT v.advisory, x.vuln_id, x.severity, x.nid FROM (
       SELECT f.vuln_id, f.severity, np.nid FROM pkg_findings f JOIN node_pkgs np ON np.pkg_id = f.pkg_id
       UNION ALL
       SELECT kf.vuln_id, kf.severity, nk.nid FROM kernel_findings kf JOIN node_kernels nk ON nk.kernel_id = kf.kernel_id
     ) x JOIN vulns v ON v.vuln_id = x.vuln_id WHERE v.advisory IS NOT NULL AND v.advisory <> ''`,
  );
  const by = new Map<string, { vulns: Set<string>; hosts: Set<number>; severity: string }>();
  const rank: readonly string[] = SEVERITIES;
  for (const r of rows)
    for (const id of r.advisory.split(/[\s,]+/).filter(Boolean)) {
      const a = by.get(id) ?? { vulns: new Set(), hosts: new Set(), severity: "UNKNOWN" };
      a.vulns.add(r.vuln_id);
      a.hosts.add(Number(r.nid));
      if (rank.indexOf(r.severity) > rank.indexOf(a.severity)) a.severity = r.severity;
      by.set(id, a);
    }
  return {
    advisories: [...by.entries()]
      .map(([id, a]) => ({ id, vulns: [...a.vulns].sort(), hosts: a.hosts.size, severity: a.severity }))
      .sort((a, b) => b.hosts - a.hosts || (a.id < b.id ? -1 : 1))
      .slice(0, limit),
  };
}
