// Turns a profile into a build plan, checking it against the archive before anything is built: every
// package exists, the kernel exists, every service is shipped by a package of the image. Also computes
// the closure (for the report's "why is this here") and the archive state the build is pinned to.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { BerthError, UsageError } from "../common/errors.ts";
import { writeFileAtomic } from "../common/fsutil.ts";
import { type Progress, silentProgress } from "../common/progress.ts";
import type { Archive, VerifiedRelease } from "../pkg/archive.ts";
import { type ArchiveState, archiveStateOf } from "../pkg/archive-state.ts";
import { unitIndex } from "../pkg/contents.ts";
import { listDeb } from "../pkg/deb.ts";
import type { PackageIndex, PackageRecord } from "../pkg/index.ts";
import { type Resolution, resolve } from "../pkg/resolve.ts";
import { type Repository, repositoriesOf, resolveSources, type SourcesConfig } from "../pkg/sources.ts";
import { type Profile, whereIs } from "./profile.ts";
import { UPDATE_UNITS } from "./update-files.ts";

export interface BuildPlan {
  profile: Profile;
  sources: SourcesConfig;
  repos: Repository[];
  releases: VerifiedRelease[];
  index: PackageIndex;
  /** Packages asked of mmdebstrap (besides the variant's own set and berth-base). */
  includes: string[];
  resolution: Resolution;
  kernel: PackageRecord;
  sourceDateEpoch: number;
  archive: ArchiveState[];
  notes: string[];
}

/** Units berth-base itself ships (see base-package.ts). */
export const BASE_UNITS = [
  "berth-resolvconf.service",
  "berth-resolvconf.path",
  "berth-preload-images.service",
  "berth-check.service",
  "berth-ssh-keygen.service",
  "berth-grow-state.service",

  "berth-docker-tcp.socket",
  "berth-docker-tcp.service",
  ...UPDATE_UNITS,
];

export function runtimePackages(p: Profile): string[] {
  return p.runtime === "docker" ? ["docker.io", "docker-cli"] : ["containerd"];
}

/**
 * What A/B updates need in every image: veritysetup (the initramfs opens the root slot with it) and
 * systemd-boot's tools for boot assessment (systemd-bless-boot).
 */
export const UPDATE_PACKAGES = ["cryptsetup-bin", "systemd-boot"];

/**
 * What Berth's own CLI in the image (berth-runtime.ts) needs besides the essential set: the Node.js
 * binary links libstdc++.
 */
export const BERTH_RUNTIME_PACKAGES = ["libstdc++6"];

function suitesOf(p: Profile): string[] {
  const s = [p.suite];
  if (p.updates) s.push(`${p.suite}-updates`);
  if (p.security) s.push(`${p.suite}-security`);
  return s;
}

function similar(index: PackageIndex, name: string): string {
  const prefix = name.slice(0, Math.max(3, name.length - 3));
  const hits = [...index.names()].filter((n) => n.startsWith(prefix)).slice(0, 4);
  return hits.length ? ` (similar: ${hits.join(", ")})` : "";
}

/** Units shipped by each package, from the .deb itself, cached per .deb digest. */
async function unitsOfDeb(archive: Archive, rec: PackageRecord): Promise<string[]> {
  const cacheFile = join(await archive.cache.dir("derived", "deb-units"), `${rec.sha256}.json`);
  try {
    return JSON.parse(await readFile(cacheFile, "utf8")) as string[];
  } catch {}
  const deb = await archive.fetchDeb(rec);
  const units = (await listDeb(deb))
    .map(
      (e) =>
        /^(?:usr\/)?lib\/systemd\/system\/([^/]+\.(?:service|socket|timer|path|mount|target))$/.exec(
          e.path,
        )?.[1],
    )
    .filter((u): u is string => !!u);
  await writeFileAtomic(cacheFile, JSON.stringify(units));
  return units;
}

export interface PlanOptions {
  progress?: Progress;
  /** The image carries Berth's CLI on Node.js (the default; the stock baseline does not). */
  berthRuntime?: boolean;
}

export async function planBuild(profile: Profile, archive: Archive, o: PlanOptions = {}): Promise<BuildPlan> {
  const progress = o.progress ?? silentProgress;
  const notes: string[] = [];
  const sources = resolveSources({
    mirror: profile.mirror,
    securityMirror: profile.securityMirror,
    suites: suitesOf(profile),
    components: ["main"],
    architecture: profile.architecture,
  });
  const repos = repositoriesOf(sources);
  progress.note(`verifying ${repos.map((r) => r.suite).join(", ")} on ${sources.mirror}`);
  const releases = await Promise.all(repos.map((r) => archive.release(r)));
  const index = await archive.loadIndex(repos, profile.architecture);

  // Every named package must exist.
  const problems: string[] = [];
  profile.packages.forEach((name, i) => {
    if (!index.candidate(name) && index.providers(name).length === 0)
      problems.push(
        `${whereIs(profile, `/packages/${i}`)}: package "${name}" is not in ${sources.suites.join(", ")}${similar(index, name)}`,
      );
  });
  const kernelMeta = index.candidate(profile.kernel.package);
  if (!kernelMeta)
    problems.push(
      `${whereIs(profile, "/kernel/package")}: kernel package "${profile.kernel.package}" is not in ${sources.suites.join(", ")}${similar(index, profile.kernel.package)}`,
    );
  if (problems.length) throw new UsageError(problems.join("; "));

  const includes = [
    ...new Set([
      ...profile.packages,
      profile.kernel.package,
      ...runtimePackages(profile),
      ...UPDATE_PACKAGES,
      ...(o.berthRuntime === false ? [] : BERTH_RUNTIME_PACKAGES),
    ]),
  ];
  // berth-base (built later) provides the initramfs tool the kernel asks for; it stands in the closure.
  const berthBase = index.recordFromStanza(
    { Package: "berth-base", Version: "0", Architecture: "all", Provides: "linux-initramfs-tool" },
    "berth",
  )!;
  const resolution = resolve(
    index,
    includes.map((name) => ({ name })),
    {
      installed: [berthBase],
      essential: true,
      recommends: profile.recommends,
      priorities:
        profile.variant === "standard"
          ? ["required", "important", "standard"]
          : profile.variant === "minbase"
            ? ["required"]
            : [],
    },
  );
  const hard = resolution.unsatisfied.filter((u) => u.package !== u.relation);
  if (resolution.unsatisfied.some((u) => u.package === u.relation))
    throw new UsageError(resolution.unsatisfied.map((u) => u.message).join("; "));
  if (hard.length) notes.push(...hard.map((u) => `resolver: ${u.message}`));

  const chosen = new Map(resolution.packages.map((p) => [p.name, p]));
  const kernelImage = resolution.packages.find((p) => /^linux-image-\d/.test(p.name));
  const kernel = kernelImage ? index.candidate(kernelImage.name) : undefined;
  if (!kernel)
    throw new UsageError(
      `${whereIs(profile, "/kernel/package")}: "${profile.kernel.package}" does not lead to a linux-image-<version> package`,
    );

  profile.cut.installTimeOnly.forEach((name, i) => {
    if (!chosen.has(name))
      notes.push(
        `${whereIs(profile, `/cut/installTimeOnly/${i}`)}: ${name} is not part of this image; nothing to purge`,
      );
  });

  // Every service must be shipped by a package of the image (or by berth-base).
  const wanted = [
    ...profile.services.enable.map((u, i) => ({ u, at: `/services/enable/${i}` })),
    ...profile.services.disable.map((u, i) => ({ u, at: `/services/disable/${i}` })),
  ];
  if (wanted.length) {
    const shipped = await unitsShipped(archive, releases, resolution, index, notes, progress);
    const bad = wanted.filter(({ u }) => !BASE_UNITS.includes(u) && !shipped.has(u));
    if (bad.length)
      throw new UsageError(
        bad
          .map(
            ({ u, at }) =>
              `${whereIs(profile, at)}: service "${u}" is not shipped by any package of this image`,
          )
          .join("; "),
      );
  }

  const dates = releases.map((r) => r.release.date?.getTime() ?? 0);
  const sourceDateEpoch = Math.floor(Math.max(...dates) / 1000);
  if (!sourceDateEpoch) throw new BerthError("no Release carries a Date; cannot pin SOURCE_DATE_EPOCH");
  return {
    profile,
    sources,
    repos,
    releases,
    index,
    includes,
    resolution,
    kernel,
    sourceDateEpoch,
    archive: releases.map(archiveStateOf),
    notes,
  };
}

/**
 * The units shipped by the packages of the closure: from the archive's Contents indexes when they verify,
 * else (some mirrors serve Contents that do not match their Release) from the .deb files themselves.
 */
async function unitsShipped(
  archive: Archive,
  releases: VerifiedRelease[],
  resolution: Resolution,
  index: PackageIndex,
  notes: string[],
  progress: Progress,
): Promise<Set<string>> {
  const names = new Set(resolution.packages.map((p) => p.name));
  const shipped = new Set<string>();
  try {
    const units = await unitIndex(archive, releases);
    for (const [unit, pkgs] of units) if ([...pkgs].some((p) => names.has(p))) shipped.add(unit);
    return shipped;
  } catch (e) {
    notes.push(
      `Contents index unusable (${(e as Error).message.split(":")[0]}); read unit lists from the packages instead`,
    );
  }
  const recs = resolution.packages
    .map((p) => index.candidate(p.name))
    .filter((r): r is PackageRecord => !!r?.sha256);
  const task = progress.task("reading unit files of packages", recs.length);
  try {
    let next = 0;
    const worker = async () => {
      while (next < recs.length) {
        const rec = recs[next++]!;
        for (const u of await unitsOfDeb(archive, rec)) shipped.add(u);
        task.advance(1);
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
  } finally {
    task.done();
  }
  return shipped;
}
