// The curated images: the definitions directory (images/*.yaml), names resolved to files, the archive
// views several images share, and which built images have newer packages in the update suites.

import { existsSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { UsageError } from "../common/errors.ts";
import type { Progress } from "../common/progress.ts";
import type { AdvisoryDb } from "../db/database.ts";
import type { Archive } from "../pkg/archive.ts";
import { compareVersions } from "../pkg/version.ts";
import { scanOciLayout } from "../scan/layers.ts";
import type { Finding } from "../scan/match.ts";
import type { ImageBuildRecord } from "./build.ts";
import { type ImageDefinition, readDefinition } from "./definition.ts";
import { scanInventory } from "./gate.ts";
import { type ArchiveView, loadView, type ViewOptions } from "./plan.ts";

/** The names of the definitions in a directory, sorted. */
export function definitionNames(dir: string): string[] {
  if (!existsSync(dir)) throw new UsageError(`no image definitions directory at ${dir}`);
  return readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => f.slice(0, -5))
    .sort();
}

/** NAME (a definition in `dir`) or a path to a .yaml file. */
export function definitionPath(dir: string, nameOrPath: string): string {
  if (nameOrPath.endsWith(".yaml") || nameOrPath.includes("/")) return resolve(nameOrPath);
  const p = join(dir, `${nameOrPath}.yaml`);
  if (!existsSync(p))
    throw new UsageError(`no image named "${nameOrPath}" (known: ${definitionNames(dir).join(", ")})`);
  return p;
}

/** Every definition named (or all of them), parsed and validated before anything is fetched. */
export function readDefinitions(dir: string, names: string[], all: boolean): ImageDefinition[] {
  if (all && names.length) throw new UsageError("give image names or --all, not both");
  if (!all && !names.length) throw new UsageError("name at least one image, or use --all");
  const list = all ? definitionNames(dir) : names;
  return list.map((n) => readDefinition(definitionPath(dir, n)));
}

/** Loads each distinct archive view once. */
export class ViewCache {
  private readonly views = new Map<string, Promise<ArchiveView>>();
  private readonly archive: Archive;
  constructor(archive: Archive) {
    this.archive = archive;
  }
  get(o: ViewOptions): Promise<ArchiveView> {
    const key = JSON.stringify(o);
    let v = this.views.get(key);
    if (!v) {
      v = loadView(this.archive, o);
      this.views.set(key, v);
    }
    return v;
  }
}

export interface OutdatedPackage {
  name: string;
  installed: string;
  candidate: string;
  /** CVEs the newer version fixes (from its changelog), with severity. */
  fixes: { vulnId: string; severity: string }[];
}

export interface OutdatedImage {
  name: string;
  version: string;
  manifestDigest: string;
  packages: OutdatedPackage[];
  cves: string[];
}

/**
 * The packages of a built image with a newer candidate in the update suites, and the CVEs those newer
 * versions fix (read from the changelogs of the newer .debs into the database, then matched).
 */
export async function outdatedImage(
  record: ImageBuildRecord,
  layoutDir: string,
  updates: ArchiveView,
  db: AdvisoryDb,
  archive: Archive,
  progress?: Progress,
): Promise<OutdatedImage> {
  const layers = await scanOciLayout(layoutDir);
  const inv = {
    target: layoutDir,
    kind: "oci-layout" as const,
    os: layers.os,
    packages: layers.packages,
    kernels: [],
  };
  const findings: Finding[] = await scanInventory(
    db,
    archive,
    { index: updates.index, location: `${updates.sources.mirror} ${updates.sources.suites.join(",")}` },
    inv,
    progress,
  );
  const packages: OutdatedPackage[] = [];
  for (const p of inv.packages) {
    const cand = updates.index.candidate(p.name);
    if (!cand || compareVersions(cand.version, p.version) <= 0) continue;
    packages.push({
      name: p.name,
      installed: p.version,
      candidate: cand.version,
      fixes: findings
        .filter(
          (f) =>
            f.package === p.name &&
            f.status === "fixed" &&
            f.fixedVersion &&
            compareVersions(cand.sourceVersion, f.fixedVersion) >= 0,
        )
        .map((f) => ({ vulnId: f.vulnId, severity: f.severity })),
    });
  }
  packages.sort((a, b) => (a.name < b.name ? -1 : 1));
  return {
    name: record.name,
    version: record.version,
    manifestDigest: record.manifestDigest,
    packages,
    cves: [...new Set(packages.flatMap((p) => p.fixes.map((f) => f.vulnId)))].sort(),
  };
}
