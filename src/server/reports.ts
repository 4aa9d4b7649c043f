// Applying a node's report: checked first (nothing is written for a report that is wrong), then
// committed in one transaction with the node row locked, and only then acknowledged. Sequence numbers
// make resends harmless: a report already committed is acknowledged again, a gap is answered with the
// seq the server needs.

import type { Container, Job, Kernel, Package, Report } from "./api-schemas.ts";
import type { FleetContext } from "./context.ts";
import { internKernels, internPackages, recountNode } from "./findings.ts";
import { takeJobsForNode } from "./jobs.ts";
import { chunks, type Param, type Sql, valuesList } from "./sql.ts";

export type ReportOutcome =
  | { kind: "ack"; ack: number; jobs: Job[] }
  | { kind: "conflict"; error: string; expected: number; full: boolean };

export class ReportError extends Error {}

const pkgId = (p: { name: string; architecture: string }) => `${p.name}:${p.architecture}`;

/**
 * A string the databases would not store as given: a NUL (PostgreSQL's text cannot hold one) or a lone
 * UTF-16 surrogate (stored as U+FFFD, so it would no longer be the string that was sent).
 */
function hasBadString(v: unknown): boolean {
  if (typeof v === "string") return v.includes("\0") || !v.isWellFormed();
  if (Array.isArray(v)) return v.some(hasBadString);
  if (v && typeof v === "object") return Object.values(v).some(hasBadString);
  return false;
}

/** Checks what a schema cannot: a report's shape as a whole. Throws ReportError (400). */
export function checkReport(r: Report): void {
  if (hasBadString(r)) throw new ReportError("a string holds a NUL or is not valid Unicode");
  if (r.full && r.base !== 0) throw new ReportError("a full report has base 0");
  if (!r.full && r.base !== r.seq - 1) throw new ReportError("a delta's base is the seq before it");
  for (const [name, section, key] of [
    ["packages", r.packages, pkgId],
    ["containers", r.containers, (c: Container) => c.id],
  ] as const) {
    if (!section) continue;
    if (section.set && (section.add || section.remove))
      throw new ReportError(`${name}: set replaces the list; it does not go with add or remove`);
    if (r.full && (section.add || section.remove))
      throw new ReportError(`${name}: a full report gives the whole list (set)`);
    const keys = new Set<string>();
    for (const item of [...(section.set ?? []), ...(section.add ?? [])] as (Package & Container)[]) {
      const k = (key as (x: Package & Container) => string)(item);
      if (keys.has(k)) throw new ReportError(`${name}: ${k} appears twice`);
      keys.add(k);
    }
    for (const k of section.remove ?? []) {
      if (keys.has(k)) throw new ReportError(`${name}: ${k} is both added and removed`);
      if (name === "packages" && !/^[^:\s]+:[^:\s]*$/.test(k))
        throw new ReportError(`packages: remove wants name:architecture, not "${k}"`);
    }
  }
  if (r.harden) {
    const failing = new Set(r.harden.failing);
    if (failing.size !== r.harden.failing.length) throw new ReportError("harden: a rule id appears twice");
  }
  const patches = new Set((r.patches ?? []).map((p) => `${p.kind}:${p.name}`));
  if (patches.size !== (r.patches?.length ?? 0)) throw new ReportError("patches: a patch appears twice");
  if ((r.kernels ?? []).filter((k) => k.running).length > 1)
    throw new ReportError("kernels: more than one is running");
}

interface NodeState {
  nid: number;
  seq: number;
  report_hash: string | null;
  codename: string;
}

async function replacePackages(ctx: FleetContext, tx: Sql, nid: number, codename: string, list: Package[]) {
  await tx.run("DELETE FROM node_pkgs WHERE nid = ?", [nid]);
  await insertNodePkgs(tx, nid, await internPackages(ctx, tx, codename, list));
}

async function insertNodePkgs(tx: Sql, nid: number, ids: number[]) {
  for (const part of chunks([...new Set(ids)], 400)) {
    const params: Param[] = [];
    for (const id of part) params.push(nid, id);
    await tx.run(
      `INSERT INTO node_pkgs (nid, pkg_id) VALUES ${valuesList(part.length, 2)} ON CONFLICT DO NOTHING`,
      params,
    );
  }
}

async function removePackages(tx: Sql, nid: number, keys: string[]) {
  for (const k of keys) {
    const i = k.indexOf(":");
    await tx.run(
      "DELETE FROM node_pkgs WHERE nid = ? AND pkg_id IN (SELECT id FROM pkgs WHERE name = ? AND architecture = ?)",
      [nid, k.slice(0, i), k.slice(i + 1)],
    );
  }
}

async function replaceContainers(tx: Sql, nid: number, list: Container[]) {
  await tx.run("DELETE FROM node_containers WHERE nid = ?", [nid]);
  await addContainers(tx, nid, list);
}

async function addContainers(tx: Sql, nid: number, list: Container[]) {
  for (const part of chunks(list, 200)) {
    const params: Param[] = [];
    for (const c of part) params.push(nid, c.id, c.name, c.image, c.imageId, c.state);
    await tx.run(
      `INSERT INTO node_containers (nid, id, name, image, image_id, state) VALUES ${valuesList(part.length, 6)} ON CONFLICT (nid, id) DO UPDATE SET name = excluded.name, image = excluded.image, image_id = excluded.image_id, state = excluded.state`,
      params,
    );
  }
}

async function removeContainers(tx: Sql, nid: number, ids: string[]) {
  for (const part of chunks(ids, 400))
    await tx.run(`DELETE FROM node_containers WHERE nid = ? AND id IN (${part.map(() => "?").join(", ")})`, [
      nid,
      ...part,
    ]);
}

/** Applies a checked report for node `nid`; `bodyHash` identifies the exact report for resends. */
export async function applyReport(
  ctx: FleetContext,
  nid: number,
  r: Report,
  bodyHash: string,
  /** Runs first in the transaction (the signed request's replay check); throws to refuse. */
  first: (tx: Sql) => Promise<void> = async () => {},
): Promise<ReportOutcome> {
  return ctx.db.tx(async (tx) => {
    await first(tx);
    const lock = tx.dialect === "postgres" ? " FOR UPDATE" : "";
    const node = (await tx.get<NodeState>(
      `SELECT nid, seq, report_hash, codename FROM nodes WHERE nid = ?${lock}`,
      [nid],
    ))!;
    const seq = Number(node.seq);
    const now = ctx.now();
    if (r.seq <= seq) {
      if (r.seq === seq && node.report_hash !== bodyHash)
        return {
          kind: "conflict",
          error: `report ${r.seq} differs from the one committed with that seq`,
          expected: seq + 1,
          full: true,
        };
      // A resend of something already committed (its answer was lost): acknowledge it again.
      await tx.run("UPDATE nodes SET last_seen = ? WHERE nid = ?", [now, nid]);
      return { kind: "ack", ack: seq, jobs: await takeJobsForNode(ctx, tx, nid) };
    }
    if (!r.full && r.base !== seq)
      return {
        kind: "conflict",
        error: `report ${r.seq} is a delta on ${r.base}, but the last report committed is ${seq}`,
        expected: seq + 1,
        full: seq === 0,
      };
    const codename = r.os ? (r.os.codename ?? "") : r.full ? "" : node.codename;
    if (!r.full && codename !== node.codename)
      return {
        kind: "conflict",
        error: "the release changed: send a full report",
        expected: seq + 1,
        full: true,
      };

    const sets: string[] = ["seq = ?", "report_hash = ?", "last_seen = ?"];
    const params: Param[] = [r.seq, bodyHash, now];
    const set = (column: string, value: Param) => {
      sets.push(`${column} = ?`);
      params.push(value);
    };
    let recount = false;

    // Packages.
    const pk = r.packages ?? (r.full ? { set: [] } : undefined);
    if (pk) {
      recount = true;
      if (pk.set) await replacePackages(ctx, tx, nid, codename, pk.set);
      else {
        const add = pk.add ?? [];
        // A changed package replaces the old version of the same name and architecture.
        await removePackages(tx, nid, [...(pk.remove ?? []), ...add.map(pkgId)]);
        await insertNodePkgs(tx, nid, await internPackages(ctx, tx, codename, add));
      }
      const n = await tx.get<{ n: number }>("SELECT count(*) AS n FROM node_pkgs WHERE nid = ?", [nid]);
      set("n_packages", Number(n?.n ?? 0));
    }

    // Kernels.
    const kernels: Kernel[] | undefined = r.kernels ?? (r.full ? [] : undefined);
    if (kernels) {
      recount = true;
      await tx.run("DELETE FROM node_kernels WHERE nid = ?", [nid]);
      const ids = await internKernels(ctx, tx, codename, kernels);
      for (const id of ids)
        await tx.run("INSERT INTO node_kernels (nid, kernel_id) VALUES (?, ?)", [nid, id]);
      set("kernels", JSON.stringify(kernels));
      set("kernel", kernels.find((k) => k.running)?.release ?? null);
    }

    // Containers.
    const ct = r.containers ?? (r.full ? { set: [] } : undefined);
    if (ct) {
      if (ct.set) await replaceContainers(tx, nid, ct.set);
      else {
        await removeContainers(tx, nid, ct.remove ?? []);
        await addContainers(tx, nid, ct.add ?? []);
      }
      const n = await tx.get<{ n: number }>("SELECT count(*) AS n FROM node_containers WHERE nid = ?", [nid]);
      set("n_containers", Number(n?.n ?? 0));
    }

    // Hardening.
    if (r.harden !== undefined || r.full) {
      const h = r.harden ?? null;
      await tx.run("DELETE FROM node_harden_failing WHERE nid = ?", [nid]);
      if (h)
        for (const part of chunks(h.failing, 400)) {
          const p: Param[] = [];
          for (const id of part) p.push(nid, id);
          await tx.run(
            `INSERT INTO node_harden_failing (nid, rule_id) VALUES ${valuesList(part.length, 2)}`,
            p,
          );
        }
      set("harden_profile", h?.profile ?? null);
      set("harden_score", h?.score ?? null);
      set("harden_rules", h?.rules ?? null);
      set("harden_at", h ? Date.parse(h.checkedAt) || now : null);
    }

    // Live patches.
    if (r.patches !== undefined || r.full) {
      const patches = r.patches ?? [];
      await tx.run("DELETE FROM node_patches WHERE nid = ?", [nid]);
      for (const p of patches)
        await tx.run("INSERT INTO node_patches (nid, kind, name) VALUES (?, ?, ?)", [nid, p.kind, p.name]);
      set("patches", JSON.stringify(patches));
    }

    if (r.update !== undefined) {
      set("update_state", r.update.state);
      set("update_status", JSON.stringify(r.update));
    } else if (r.full) {
      set("update_state", "idle");
      set("update_status", null);
    }
    if (r.release !== undefined || r.full) set("release", r.release ?? null);
    if (r.os !== undefined || r.full) {
      set("os", r.os ? JSON.stringify(r.os) : null);
      set("codename", codename);
    }
    if (r.hostname) set("hostname", r.hostname);

    if (recount) await recountNode(tx, nid);
    params.push(nid);
    await tx.run(`UPDATE nodes SET ${sets.join(", ")} WHERE nid = ?`, params);
    return { kind: "ack", ack: r.seq, jobs: await takeJobsForNode(ctx, tx, nid) };
  });
}
