// The fleet's packages and kernels, each distinct one stored once with its findings, and the per-node
// counts derived from them. Matching a package is done once per advisory-database generation, however
// many nodes have it; re-evaluating the fleet after a database update is one pass over the distinct
// packages plus one grouped count, never a pass over each node's inventory.

import { SEVERITIES } from "../db/severity.ts";
import type { Kernel, Package } from "./api-schemas.ts";
import type { FleetContext } from "./context.ts";
import type { MatchedFinding } from "./matcher.ts";
import { chunks, type Param, type Sql, valuesList } from "./sql.ts";

const PKG_COLUMNS = "codename, name, version, architecture, status, source, source_version";

export const pkgKey = (codename: string, p: Package): string =>
  [codename, p.name, p.version, p.architecture, p.status, p.source, p.sourceVersion].join("\0");

interface PkgRow {
  id: number;
  codename: string;
  name: string;
  version: string;
  architecture: string;
  status: string;
  source: string;
  source_version: string;
  evaluated: string;
}

const rowPackage = (r: PkgRow): Package => ({
  name: r.name,
  version: r.version,
  architecture: r.architecture,
  status: r.status,
  source: r.source,
  sourceVersion: r.source_version,
});

/** Ids of the packages (one per entry, in order), creating and matching the ones new to the fleet. */
export async function internPackages(
  ctx: FleetContext,
  tx: Sql,
  codename: string,
  packages: Package[],
): Promise<number[]> {
  const ids: number[] = new Array(packages.length);
  const missing = new Map<string, Package>();
  packages.forEach((p, i) => {
    const key = pkgKey(codename, p);
    const id = ctx.pkgIds.get(key);
    if (id !== undefined) ids[i] = id;
    else missing.set(key, p);
  });
  if (missing.size) {
    // Sorted, so that concurrent transactions take the unique index's locks in one order.
    const fresh = [...missing.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, p]) => p);
    for (const part of chunks(fresh, 200)) {
      const params: Param[] = [];
      for (const p of part)
        params.push(codename, p.name, p.version, p.architecture, p.status, p.source, p.sourceVersion);
      await tx.run(
        `INSERT INTO pkgs (${PKG_COLUMNS}) VALUES ${valuesList(part.length, 7)} ON CONFLICT DO NOTHING`,
        params,
      );
    }
    const rows: PkgRow[] = [];
    const names = [...new Set(fresh.map((p) => p.name))];
    for (const part of chunks(names, 500))
      rows.push(
        ...(await tx.all<PkgRow>(
          `SELECT id, ${PKG_COLUMNS}, evaluated FROM pkgs WHERE codename = ? AND name IN (${part.map(() => "?").join(", ")})`,
          [codename, ...part],
        )),
      );
    const stale: PkgRow[] = [];
    for (const r of rows) {
      const key = pkgKey(codename, rowPackage(r));
      if (!missing.has(key)) continue;
      ctx.pkgIds.set(key, r.id);
      if (r.evaluated !== ctx.matcher.generation) stale.push(r);
    }
    if (stale.length) await evaluatePackages(ctx, tx, stale);
    packages.forEach((p, i) => {
      if (ids[i] !== undefined) return;
      const id = ctx.pkgIds.get(pkgKey(codename, p));
      if (id === undefined) throw new Error(`package ${p.name} ${p.version} was not stored as given`);
      ids[i] = id;
    });
  }
  return ids;
}

async function storeVulnInfo(tx: Sql, findings: MatchedFinding[]): Promise<void> {
  const byId = new Map<string, MatchedFinding>();
  for (const f of findings) if (!byId.has(f.vulnId)) byId.set(f.vulnId, f);
  for (const part of chunks([...byId.values()], 300)) {
    const params: Param[] = [];
    for (const f of part) params.push(f.vulnId, f.title, f.advisory);
    await tx.run(
      `INSERT INTO vulns (vuln_id, title, advisory) VALUES ${valuesList(part.length, 3)} ON CONFLICT (vuln_id) DO UPDATE SET title = excluded.title, advisory = excluded.advisory`,
      params,
    );
  }
}

/** Matches packages against the advisory database and replaces their findings. */
async function evaluatePackages(ctx: FleetContext, tx: Sql, rows: PkgRow[]): Promise<number> {
  const gen = ctx.matcher.generation;
  const byCodename = new Map<string, PkgRow[]>();
  for (const r of rows) byCodename.set(r.codename, [...(byCodename.get(r.codename) ?? []), r]);
  const all: { pkgId: number; f: MatchedFinding }[] = [];
  for (const [codename, group] of byCodename) {
    const matched = ctx.matcher.matchPackages(codename, group.map(rowPackage));
    matched.forEach((fs, i) => {
      for (const f of fs) all.push({ pkgId: group[i]!.id, f });
    });
  }
  for (const part of chunks(rows, 500)) {
    const marks = part.map(() => "?").join(", ");
    const ids = part.map((r) => r.id);
    await tx.run(`DELETE FROM pkg_findings WHERE pkg_id IN (${marks})`, ids);
    await tx.run(`UPDATE pkgs SET evaluated = ? WHERE id IN (${marks})`, [gen, ...ids]);
  }
  for (const part of chunks(all, 150)) {
    const params: Param[] = [];
    for (const { pkgId, f } of part)
      params.push(pkgId, f.vulnId, f.severity, f.status, f.fixedVersion, f.dataSource);
    await tx.run(
      `INSERT INTO pkg_findings (pkg_id, vuln_id, severity, status, fixed_version, data_source) VALUES ${valuesList(part.length, 6)} ON CONFLICT (pkg_id, vuln_id) DO UPDATE SET severity = excluded.severity, status = excluded.status, fixed_version = excluded.fixed_version, data_source = excluded.data_source`,
      params,
    );
  }
  await storeVulnInfo(
    tx,
    all.map((a) => a.f),
  );
  return all.length;
}

/** The fields of a kernel that matching reads, in a fixed order. */
const kernelKey = (codename: string, k: Kernel): string =>
  JSON.stringify([
    codename,
    k.release,
    k.upstream ?? null,
    k.package ?? null,
    k.packageVersion ?? null,
    k.running,
  ]);

export async function internKernels(
  ctx: FleetContext,
  tx: Sql,
  codename: string,
  kernels: Kernel[],
): Promise<number[]> {
  const ids: number[] = [];
  for (const k of kernels) {
    const key = kernelKey(codename, k);
    let id = ctx.kernelIds.get(key);
    if (id === undefined) {
      await tx.run("INSERT INTO kernels (key, codename, kernel) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", [
        key,
        codename,
        JSON.stringify(k),
      ]);
      const row = (await tx.get<{ id: number; evaluated: string }>(
        "SELECT id, evaluated FROM kernels WHERE key = ?",
        [key],
      ))!;
      id = row.id;
      if (row.evaluated !== ctx.matcher.generation) await evaluateKernel(ctx, tx, id, codename, k);
      ctx.kernelIds.set(key, id);
    }
    ids.push(id);
  }
  return [...new Set(ids)];
}

async function evaluateKernel(ctx: FleetContext, tx: Sql, id: number, codename: string, k: Kernel) {
  const findings = ctx.matcher.matchKernel(codename, k);
  await tx.run("DELETE FROM kernel_findings WHERE kernel_id = ?", [id]);
  const seen = new Set<string>();
  const unique = findings.filter((f) => !seen.has(f.vulnId) && seen.add(f.vulnId));
  for (const part of chunks(unique, 120)) {
    const params: Param[] = [];
    for (const f of part)
      params.push(id, f.vulnId, f.package, f.installed, f.severity, f.status, f.fixedVersion, f.dataSource);
    await tx.run(
      `INSERT INTO kernel_findings (kernel_id, vuln_id, package, installed, severity, status, fixed_version, data_source) VALUES ${valuesList(part.length, 8)} ON CONFLICT (kernel_id, vuln_id) DO NOTHING`,
      params,
    );
  }
  await storeVulnInfo(tx, unique);
  await tx.run("UPDATE kernels SET evaluated = ? WHERE id = ?", [ctx.matcher.generation, id]);
}

export type SeverityCounts = Record<(typeof SEVERITIES)[number], number>;
const COLUMN: Record<string, string> = {
  CRITICAL: "f_critical",
  HIGH: "f_high",
  MEDIUM: "f_medium",
  LOW: "f_low",
  NEGLIGIBLE: "f_negligible",
  UNKNOWN: "f_unknown",
};
const emptyCounts = (): SeverityCounts => Object.fromEntries(SEVERITIES.map((s) => [s, 0])) as SeverityCounts;

const FINDINGS_OF_NODES = (where: string) => `
  SELECT nid, severity, count(*) AS n FROM (
    SELECT np.nid AS nid, f.severity AS severity FROM node_pkgs np JOIN pkg_findings f ON f.pkg_id = np.pkg_id ${where.replaceAll("NID", "np.nid")}
    UNION ALL
    SELECT nk.nid AS nid, kf.severity AS severity FROM node_kernels nk JOIN kernel_findings kf ON kf.kernel_id = nk.kernel_id ${where.replaceAll("NID", "nk.nid")}
  ) x GROUP BY nid, severity`;

async function writeCounts(tx: Sql, counts: Map<number, SeverityCounts>): Promise<void> {
  const cols = Object.values(COLUMN);
  for (const part of chunks([...counts.entries()], 300)) {
    const params: Param[] = [];
    for (const [nid, c] of part) {
      params.push(nid);
      let total = 0;
      for (const s of Object.keys(COLUMN)) {
        params.push(c[s as keyof SeverityCounts] ?? 0);
        total += c[s as keyof SeverityCounts] ?? 0;
      }
      params.push(total);
    }
    const row = `(CAST(? AS BIGINT), ${[...cols, "f_total"].map(() => "CAST(? AS INTEGER)").join(", ")})`;
    const sets = [...cols, "f_total"].map((c, i) => `${c} = v.column${i + 2}`).join(", ");
    await tx.run(
      `UPDATE nodes SET ${sets} FROM (VALUES ${part.map(() => row).join(", ")}) AS v WHERE nodes.nid = v.column1`,
      params,
    );
  }
}

/** Recounts one node's findings by severity (after its packages or kernels changed). */
export async function recountNode(tx: Sql, nid: number): Promise<void> {
  const rows = await tx.all<{ nid: number; severity: string; n: number }>(
    FINDINGS_OF_NODES("WHERE NID = ?"),
    [nid, nid],
  );
  const c = emptyCounts();
  for (const r of rows) c[r.severity as keyof SeverityCounts] = Number(r.n);
  await writeCounts(tx, new Map([[nid, c]]));
}

/** Recounts every node's findings in one grouped query. */
export async function recountFleet(tx: Sql): Promise<void> {
  const counts = new Map<number, SeverityCounts>();
  await tx.run(
    "UPDATE nodes SET f_critical = 0, f_high = 0, f_medium = 0, f_low = 0, f_negligible = 0, f_unknown = 0, f_total = 0",
  );
  for (const r of await tx.all<{ nid: number; severity: string; n: number }>(FINDINGS_OF_NODES(""))) {
    let c = counts.get(r.nid);
    if (!c) {
      c = emptyCounts();
      counts.set(r.nid, c);
    }
    c[r.severity as keyof SeverityCounts] = Number(r.n);
  }
  await writeCounts(tx, counts);
}

export interface Reevaluation {
  generation: string;
  packages: number;
  kernels: number;
  findings: number;
  seconds: number;
}

/**
 * Brings every package and kernel to the matcher's generation and recounts the nodes they touch.
 * Returns undefined when everything was already current.
 */
export async function reevaluate(ctx: FleetContext): Promise<Reevaluation | undefined> {
  const t0 = performance.now();
  const gen = ctx.matcher.generation;
  let packages = 0;
  let kernels = 0;
  let findings = 0;
  const touched = new Set<number>();
  for (;;) {
    const rows = await ctx.db.all<PkgRow>(
      `SELECT id, ${PKG_COLUMNS}, evaluated FROM pkgs WHERE evaluated <> ? ORDER BY id LIMIT 20000`,
      [gen],
    );
    if (!rows.length) break;
    findings += await ctx.db.tx((tx) => evaluatePackages(ctx, tx, rows));
    packages += rows.length;
    for (const r of rows) touched.add(r.id);
  }
  const krows = await ctx.db.all<{ id: number; codename: string; kernel: string }>(
    "SELECT id, codename, kernel FROM kernels WHERE evaluated <> ?",
    [gen],
  );
  for (const k of krows)
    await ctx.db.tx((tx) => evaluateKernel(ctx, tx, k.id, k.codename, JSON.parse(k.kernel) as Kernel));
  kernels = krows.length;
  if (!packages && !kernels) return undefined;
  await ctx.db.tx(async (tx) => {
    if (touched.size >= 2000 || kernels) await recountFleet(tx);
    else {
      // A few stragglers (packages first seen by a process that had not yet noticed the new data).
      const nids = new Set<number>();
      for (const part of chunks([...touched], 500))
        for (const r of await tx.all<{ nid: number }>(
          `SELECT DISTINCT nid FROM node_pkgs WHERE pkg_id IN (${part.map(() => "?").join(", ")})`,
          part,
        ))
          nids.add(r.nid);
      for (const nid of nids) await recountNode(tx, nid);
    }
    await tx.run(
      "INSERT INTO meta (key, value) VALUES ('evaluated', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      [
        JSON.stringify({
          generation: gen,
          at: ctx.now(),
          seconds: (performance.now() - t0) / 1000,
          packages,
          kernels,
          findings,
        }),
      ],
    );
  });
  return { generation: gen, packages, kernels, findings, seconds: (performance.now() - t0) / 1000 };
}
