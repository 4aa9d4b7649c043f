// From a definition to what goes into the image, checked against the archive before any .deb is
// fetched: every package exists, the closure (Recommends off) with the reason for each package, the
// dropped packages taken out together with what only they pulled in, the paths the definition relies
// on shipped by a package of the image (from the Contents indexes), and the archive state the build is
// pinned to (SOURCE_DATE_EPOCH is the newest Release date).

import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { join, posix } from "node:path";
import { createInterface } from "node:readline";
import { decompressor } from "../common/decompress.ts";
import { BerthError, UsageError } from "../common/errors.ts";
import { writeFileAtomic } from "../common/fsutil.ts";
import { sha256Hex } from "../common/hash.ts";
import type { Archive, VerifiedRelease } from "../pkg/archive.ts";
import { type ArchiveState, archiveStateOf } from "../pkg/archive-state.ts";
import type { PackageIndex, PackageRecord } from "../pkg/index.ts";
import { type Resolution, type ResolvedPackage, resolve } from "../pkg/resolve.ts";
import { type Repository, repositoriesOf, resolveSources, type SourcesConfig } from "../pkg/sources.ts";
import type { ImageDefinition } from "./definition.ts";

/** A loaded archive view (indexes of some suites), shared by every image of one command. */
export interface ArchiveView {
  sources: SourcesConfig;
  repos: Repository[];
  releases: VerifiedRelease[];
  index: PackageIndex;
}

export interface DroppedPackage {
  package: string;
  reason: string;
  /** Packages that left the closure with it (nothing else needed them). */
  alsoRemoved: string[];
}

export interface ImagePlan {
  def: ImageDefinition;
  view: ArchiveView;
  resolution: Resolution;
  /** The packages of the image, with their index records, in closure order. */
  packages: { resolved: ResolvedPackage; record: PackageRecord }[];
  dropped: DroppedPackage[];
  sourceDateEpoch: number;
  archive: ArchiveState[];
  notes: string[];
}

export interface ViewOptions {
  suites: string[];
  mirror?: string;
  securityMirror?: string;
}

/** Verifies the suites' Release files and loads their Packages indexes. */
export async function loadView(archive: Archive, o: ViewOptions): Promise<ArchiveView> {
  const sources = resolveSources({
    suites: o.suites,
    mirror: o.mirror,
    securityMirror: o.securityMirror,
    components: ["main"],
    architecture: "amd64",
  });
  const repos = repositoriesOf(sources);
  const releases = await Promise.all(repos.map((r) => archive.release(r)));
  const index = await archive.loadIndex(repos, "amd64");
  return { sources, repos, releases, index };
}

/** The view key of a definition under optional overrides: images with equal keys share one view. */
export function viewOptionsOf(def: ImageDefinition, suites?: string[]): ViewOptions {
  return { suites: suites ?? def.suites, mirror: def.mirror, securityMirror: def.securityMirror };
}

function similar(index: PackageIndex, name: string): string {
  const prefix = name.slice(0, Math.max(3, name.length - 3));
  const hits = [...index.names()].filter((n) => n.startsWith(prefix)).slice(0, 4);
  return hits.length ? ` (similar: ${hits.join(", ")})` : "";
}

export function planImage(def: ImageDefinition, view: ArchiveView): ImagePlan {
  const { index } = view;
  const suites = view.sources.suites.join(", ");
  const problems: string[] = [];
  def.packages.forEach((name, i) => {
    if (!index.candidate(name))
      problems.push(
        `${def.where(`/packages/${i}`)}: package "${name}" is not in ${suites}${index.providers(name).length ? " (it is a virtual package: name a provider)" : similar(index, name)}`,
      );
  });
  def.drop.forEach((d, i) => {
    if (!index.candidate(d.package))
      problems.push(`${def.where(`/drop/${i}/package`)}: package "${d.package}" is not in ${suites}`);
  });
  if (problems.length) throw new UsageError(problems.join("; "));

  const request = def.packages.map((name) => ({ name }));
  const full = resolve(index, request, {});
  const inFull = new Set(full.packages.map((p) => p.name));
  def.drop.forEach((d, i) => {
    if (!inFull.has(d.package))
      problems.push(
        `${def.where(`/drop/${i}/package`)}: "${d.package}" is not in the closure of this image; nothing to drop`,
      );
  });
  if (problems.length) throw new UsageError(problems.join("; "));

  // A dropped package stands in the closure as already installed: it satisfies what depends on it, and
  // nothing it depends on is pulled in through it.
  const stubs = def.drop.map((d) => {
    const c = index.candidate(d.package)!;
    return index.recordFromStanza(
      {
        Package: c.name,
        Version: c.version,
        Architecture: c.architecture,
        ...(c.provides ? { Provides: c.provides } : {}),
      },
      "dropped",
    )!;
  });
  const resolution = resolve(index, request, { installed: stubs });
  if (resolution.unsatisfied.length)
    throw new UsageError(`${def.source}: ${resolution.unsatisfied.map((u) => u.message).join("; ")}`);
  const kept = new Set(resolution.packages.map((p) => p.name));
  const gone = full.packages.filter((p) => !kept.has(p.name) && !def.drop.some((d) => d.package === p.name));
  const dropped = def.drop.map((d) => ({
    package: d.package,
    reason: d.reason,
    // Attribute each package that left to the first dropped package on its chain in the full closure.
    alsoRemoved: gone.filter((p) => firstDroppedOnChain(full, p.name, def) === d.package).map((p) => p.name),
  }));
  const packages = resolution.packages.map((resolved) => ({
    resolved,
    record: index.candidate(resolved.name)!,
  }));
  const notes = resolution.conflicts.map((c) => `resolver: ${c.message}`);

  const dates = view.releases.map((r) => r.release.date?.getTime() ?? 0);
  const sourceDateEpoch = Math.floor(Math.max(...dates) / 1000);
  if (!sourceDateEpoch) throw new BerthError("no Release carries a Date; cannot pin SOURCE_DATE_EPOCH");
  return {
    def,
    view,
    resolution,
    packages,
    dropped,
    sourceDateEpoch,
    archive: view.releases.map(archiveStateOf),
    notes,
  };
}

function firstDroppedOnChain(full: Resolution, name: string, def: ImageDefinition): string | undefined {
  const byName = new Map(full.packages.map((p) => [p.name, p]));
  const drops = new Set(def.drop.map((d) => d.package));
  let cur = byName.get(name);
  const seen = new Set<string>();
  let found: string | undefined;
  while (cur && !seen.has(cur.name)) {
    seen.add(cur.name);
    if (drops.has(cur.name)) found = cur.name;
    cur = cur.reason.parent ? byName.get(cur.reason.parent) : undefined;
  }
  return found;
}

/** Paths the definition relies on that a package must ship: programs it runs, link targets, sources. */
export function pathsRelied(def: ImageDefinition): { path: string; pointer: string }[] {
  const own = new Set([
    ...def.files.map((f) => f.path),
    ...def.symlinks.map((s) => s.path),
    ...def.generate.map((g) => g.path),
  ]);
  const fromAdd = (p: string) => def.add.some((a) => p === a.to || p.startsWith(`${a.to}/`));
  const out: { path: string; pointer: string }[] = [];
  const want = (path: string, pointer: string) => {
    if (!path.startsWith("/") || own.has(path) || fromAdd(path)) return;
    out.push({ path, pointer });
  };
  if (def.run.entrypoint.length) want(def.run.entrypoint[0]!, "/run/entrypoint/0");
  else want(def.run.cmd[0]!, "/run/cmd/0");
  want(def.run.healthcheck.test[0]!, "/run/healthcheck/test/0");
  def.symlinks.forEach((s, i) => {
    want(posix.resolve(posix.dirname(s.path), s.target), `/symlinks/${i}/target`);
  });
  def.generate.forEach((g, i) => {
    g.sources.forEach((s, j) => {
      want(s, `/generate/${i}/sources/${j}`);
    });
  });
  return out;
}

/** The merged-/usr spellings of a path: /bin/sh is /usr/bin/sh and the other way round. */
function spellings(path: string): string[] {
  const rel = path.replace(/^\/+/, "");
  const m = /^(bin|sbin|lib|lib64)\/(.*)$/.exec(rel);
  if (m) return [rel, `usr/${rel}`];
  const u = /^usr\/(bin|sbin|lib|lib64)\/(.*)$/.exec(rel);
  return u ? [rel, rel.slice(4)] : [rel];
}

/** path -> packages shipping it, from the suites' Contents indexes, for the paths asked only. */
async function shippersFromContents(
  archive: Archive,
  view: ArchiveView,
  paths: string[],
): Promise<Map<string, Set<string>>> {
  const files: { vr: VerifiedRelease; path: string; sha256: string }[] = [];
  for (const vr of view.releases)
    for (const arch of ["amd64", "all"]) {
      const e = vr.release.files.get(`main/Contents-${arch}.gz`);
      if (e) files.push({ vr, path: e.path, sha256: e.sha256 });
    }
  const wanted = new Set(paths.flatMap(spellings));
  const key = sha256Hex(JSON.stringify([files.map((f) => f.sha256), [...wanted].sort()]));
  const cacheFile = join(await archive.cache.dir("derived", "image-paths"), `${key}.json`);
  const out = new Map<string, Set<string>>();
  try {
    for (const [p, pkgs] of Object.entries(
      JSON.parse(await readFile(cacheFile, "utf8")) as Record<string, string[]>,
    ))
      out.set(p, new Set(pkgs));
    return out;
  } catch {}
  const unusable = join(await archive.cache.dir("derived", "image-paths"), "unusable-contents");
  const bad = new Set((await readFile(unusable, "utf8").catch(() => "")).split("\n").filter(Boolean));
  const known = files.find((f) => bad.has(f.sha256));
  if (known) throw new BerthError(`${known.path} of ${known.vr.repo.suite} did not verify earlier`);
  for (const f of files) {
    let raw: string;
    try {
      raw = await archive.rawIndexFile(f.vr, f.path);
    } catch (e) {
      // Some mirrors serve Contents files that do not match their Release; remember, do not refetch.
      await writeFileAtomic(unusable, [...bad, f.sha256].join("\n"));
      throw e;
    }
    const lines = createInterface({
      input: createReadStream(raw).pipe(decompressor("gz", f.path)),
      crlfDelay: Number.POSITIVE_INFINITY,
    });
    for await (const line of lines) {
      const sp = line.lastIndexOf(" ");
      if (sp < 0) continue;
      const p = line.slice(0, sp).trimEnd();
      if (!wanted.has(p)) continue;
      const set = out.get(p) ?? new Set<string>();
      for (const q of line.slice(sp + 1).split(",")) set.add(q.slice(q.lastIndexOf("/") + 1));
      out.set(p, set);
    }
  }
  await writeFileAtomic(
    cacheFile,
    JSON.stringify(Object.fromEntries([...out].map(([p, s]) => [p, [...s].sort()]))),
  );
  return out;
}

/**
 * Refuses a definition that relies on a path no package of the image ships. Uses the Contents indexes
 * (metadata, not packages); returns false when they are unusable, so the caller checks the built tree.
 */
export async function checkShippedPaths(archive: Archive, plan: ImagePlan): Promise<boolean> {
  const relied = pathsRelied(plan.def);
  if (!relied.length) return true;
  let shippers: Map<string, Set<string>>;
  try {
    shippers = await shippersFromContents(
      archive,
      plan.view,
      relied.map((r) => r.path),
    );
  } catch (e) {
    if (e instanceof UsageError) throw e;
    plan.notes.push(
      `Contents index unusable (${(e as Error).message.split(":")[0]}); paths checked in the built tree`,
    );
    return false;
  }
  const inImage = new Set(plan.packages.map((p) => p.resolved.name));
  const problems: string[] = [];
  for (const r of relied) {
    const by = new Set(spellings(r.path).flatMap((s) => [...(shippers.get(s) ?? [])]));
    if ([...by].some((p) => inImage.has(p))) continue;
    problems.push(
      `${plan.def.where(r.pointer)}: ${r.path} is not shipped by any package of this image${by.size ? ` (it is in ${[...by].sort().slice(0, 4).join(", ")})` : ""}`,
    );
  }
  if (problems.length) throw new UsageError(problems.join("; "));
  return true;
}
