// Making the root file system: Berth drives mmdebstrap (it does not reimplement it). Packages come from
// Berth's content-addressed cache: the closure is fetched in parallel first and placed in apt's archive
// directory by a setup hook, so a warm rebuild downloads nothing; whatever apt fetched on its own is
// taken back into the cache afterwards.

import { createReadStream } from "node:fs";
import { copyFile, link, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BerthError } from "../common/errors.ts";
import { run } from "../common/exec.ts";
import { writeStreamAtomic } from "../common/fsutil.ts";
import { sha256File } from "../common/hash.ts";
import { type Progress, silentProgress } from "../common/progress.ts";
import type { Archive } from "../pkg/archive.ts";
import type { PackageRecord } from "../pkg/index.ts";
import type { BuildPlan } from "./plan.ts";
import type { Profile } from "./profile.ts";

/** dpkg path-exclude patterns for the profile's cuts (paths as shipped inside packages). */
export function dpkgExcludes(p: Profile): string[] {
  const out: string[] = [];
  if (p.cut.docs) out.push("path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright");
  if (p.cut.manpages) out.push("path-exclude=/usr/share/man/*", "path-exclude=/usr/share/info/*");
  if (p.cut.locales)
    // Translations, and glibc's charset converters: UTF-8 and ASCII are built into libc.
    out.push(
      "path-exclude=/usr/share/locale/*",
      "path-include=/usr/share/locale/locale.alias",
      "path-exclude=/usr/lib/x86_64-linux-gnu/gconv/*",
    );
  if (p.cut.docs)
    out.push(
      "path-exclude=/usr/share/lintian/*",
      "path-exclude=/usr/share/bash-completion/*",
      "path-exclude=/usr/share/zsh/*",
      "path-exclude=/usr/share/fish/*",
    );
  if (p.cut.hwdb) out.push("path-exclude=/usr/lib/udev/hwdb.d/*", "path-exclude=/lib/udev/hwdb.d/*");
  if (p.runtime === "docker")
    // containerd's own CLI and the v1 shims are unused under dockerd.
    out.push(
      "path-exclude=/usr/bin/ctr",
      "path-exclude=/usr/bin/containerd-shim",
      "path-exclude=/usr/bin/containerd-shim-runc-v1",
    );
  if (p.cut.apparmorProfiles) {
    // Debian's apparmor ships ~100 profiles for desktop programs; apparmor.service compiles every one
    // at boot (most of a minute under emulation). The includes they build on stay.
    out.push("path-exclude=/etc/apparmor.d/*");
    // (local/ holds the admin's empty override stubs; a directory is only kept for an include pattern
    // with a wildcard below it.)
    for (const dir of ["abi", "abstractions", "tunables", "disable", "force-complain", "local"])
      out.push(`path-include=/etc/apparmor.d/${dir}/*`);
    for (const name of p.cut.apparmorProfiles) out.push(`path-include=/etc/apparmor.d/${name}`);
  }
  for (const path of p.cut.paths) out.push(`path-exclude=${path}`);
  return out;
}

/** apt's archive file name for a package: name_version_arch.deb with the epoch colon escaped. */
export function aptDebName(rec: PackageRecord): string {
  return `${rec.name}_${rec.version.replace(/:/g, "%3a")}_${rec.architecture}.deb`;
}

function sourcesLines(plan: BuildPlan): string[] {
  return plan.repos.map((r) => `deb ${r.uri} ${r.suite} ${r.components.join(" ")}`);
}

export interface RootfsOptions {
  progress?: Progress;
  /** Extra local .deb files to install (berth-base). */
  localDebs: string[];
}

/** Fetches the closure into the cache and lays it out, hard-linked, as apt's archive directory. */
async function stageDebs(plan: BuildPlan, archive: Archive, dir: string): Promise<number> {
  const recs = plan.resolution.packages
    .map((p) => plan.index.candidate(p.name))
    .filter((r): r is PackageRecord => !!r?.filename && !!r.sha256);
  const paths = await archive.fetchDebs(recs);
  await mkdir(dir, { recursive: true });
  for (let i = 0; i < recs.length; i++) {
    const target = join(dir, aptDebName(recs[i]!));
    await link(paths[i]!, target).catch(async (e: NodeJS.ErrnoException) => {
      if (e.code === "EEXIST") return;
      if (e.code === "EXDEV") return copyFile(paths[i]!, target);
      throw e;
    });
  }
  return recs.length;
}

/** Moves .deb files apt downloaded itself into the content-addressed cache. */
async function ingestDownloads(archive: Archive, dir: string): Promise<number> {
  let n = 0;
  let files: string[] = [];
  try {
    files = (await readdir(dir)).filter((f) => f.endsWith(".deb"));
  } catch {
    return 0;
  }
  for (const f of files) {
    const path = join(dir, f);
    const digest = await sha256File(path);
    if (await archive.cache.has(digest)) continue;
    await writeStreamAtomic(archive.cache.blobPath(digest), createReadStream(path), []);
    n++;
  }
  return n;
}

/** Runs mmdebstrap into `root` (a directory that must not exist yet). */
export async function makeRootfs(
  plan: BuildPlan,
  archive: Archive,
  work: string,
  root: string,
  o: RootfsOptions,
): Promise<void> {
  const progress = o.progress ?? silentProgress;
  const p = plan.profile;
  const staged = join(work, "apt-archives");
  const fetchedBack = join(work, "apt-downloaded");
  progress.note(`fetching ${plan.resolution.packages.length} packages into the cache`);
  await stageDebs(plan, archive, staged);
  await mkdir(fetchedBack, { recursive: true });

  const args = [
    `--variant=${p.variant}`,
    "--mode=root",
    "--format=directory",
    `--keyring=${plan.sources.keyring}`,
    `--aptopt=APT::Install-Recommends "${p.recommends ? "true" : "false"}"`,
    ...dpkgExcludes(p).map((x) => `--dpkgopt=${x}`),
    // No fsync per unpacked file: the root is a scratch tree that becomes a squashfs (dpkg's default
    // syncs every file it writes, most of the install's time on a busy disk). Taken out again below,
    // so the image's own dpkg configuration keeps only the path filters.
    "--dpkgopt=force-unsafe-io",
    `--include=${plan.includes.join(",")}`,
    ...o.localDebs.map((d) => `--include=${d}`),
    "--skip=download/empty",
    // Makes the local berth-base .deb visible at the same path inside the chroot, and removes it after.
    "--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount",
    `--setup-hook=mkdir -p "$1/var/cache/apt/archives" && cp -l ${staged}/*.deb "$1/var/cache/apt/archives/" 2>/dev/null || cp ${staged}/*.deb "$1/var/cache/apt/archives/"`,
    // Only what apt downloaded itself (one link): the staged .debs are links into the cache already.
    `--customize-hook=find "$1/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -links 1 -exec cp -n -t ${fetchedBack} {} + 2>/dev/null || true`,
    `--customize-hook=sed -i '/^force-unsafe-io$/d' "$1/etc/dpkg/dpkg.cfg.d/99mmdebstrap"`,
    p.suite,
    root,
    ...sourcesLines(plan),
  ];
  const r = await run("mmdebstrap", args, {
    env: { ...process.env, SOURCE_DATE_EPOCH: String(plan.sourceDateEpoch), LC_ALL: "C.UTF-8" },
    onLine: (line) => {
      if (line.startsWith("I: ")) progress.note(`mmdebstrap: ${line.slice(3)}`);
    },
  });
  if (r.code !== 0) {
    await writeFile(join(work, "..", `mmdebstrap-${process.pid}.log`), r.stderr).catch(() => {});
    // mmdebstrap's last line is a summary; the first E: line says what went wrong.
    const lines = r.stderr
      .trim()
      .split("\n")
      .filter((l) => l.startsWith("E: ") && !/mmdebstrap failed to run|^E: error/.test(l));
    const cause =
      lines[0] ??
      r.stderr
        .trim()
        .split("\n")
        .filter((l) => !l.startsWith("I: "))
        .slice(-3)[0] ??
      "";
    throw new BerthError(
      `mmdebstrap failed: ${cause.replace(/^E: /, "")} (full log: ${join(work, "..", `mmdebstrap-${process.pid}.log`)})`,
    );
  }
  const added = await ingestDownloads(archive, fetchedBack);
  if (added) progress.note(`${added} packages apt fetched itself were added to the cache`);
  await rm(staged, { recursive: true, force: true });
  await rm(fetchedBack, { recursive: true, force: true });
}
