// `berth os build`: profile -> plan -> root (mmdebstrap) -> configured, trimmed root -> squashfs root
// image, kernel, initramfs, ESP and GPT disk -> manifest and report. Work happens in a scratch directory
// and a sibling staging directory; the output directory only ever receives a finished image (rename), so
// an interrupted build leaves nothing half-made there.

import { existsSync, readFileSync } from "node:fs";
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { pruneNewest } from "../common/cache.ts";
import { BerthError, UsageError } from "../common/errors.ts";
import { onInterrupt, run, runChecked } from "../common/exec.ts";
import { writeFileAtomic } from "../common/fsutil.ts";
import { type ByteRange, sha256File, sha256Hex } from "../common/hash.ts";
import { type Progress, silentProgress } from "../common/progress.ts";
import { treeDigest } from "../common/tree-digest.ts";
import { BERTH_VERSION } from "../common/version.ts";
import { hardenRoot } from "../harden/offline.ts";
import { buildBusyboxImage } from "../images/busybox.ts";
import type { Archive } from "../pkg/archive.ts";
import { readDebFile } from "../pkg/deb.ts";
import { whyChain } from "../pkg/resolve.ts";
import { buildBasePackage } from "./base-package.ts";
import { berthRuntimeFiles } from "./berth-runtime.ts";
import { type EntryRelease, entryOptions } from "./boot-entry.ts";
import { customizeRoot } from "./customize.ts";
import { makeDisk, makeEsp, makeSquashfs, parseSize, squashfsArgs, stateSeed } from "./disk.ts";
import { sfdiskPackages, withDebsInRoot } from "./grow-state.ts";
import { buildInitramfs, programWithLibraries } from "./initramfs.ts";
import { type Artifact, inspectRoot, type Manifest } from "./manifest.ts";
import { type BuildPlan, planBuild } from "./plan.ts";
import type { Profile } from "./profile.ts";
import { defaultReleaseVersion } from "./release.ts";
import { makeReport, type Report, reportMarkdown } from "./report.ts";
import { makeRootfs } from "./rootfs.ts";
import { formatVerity } from "./verity.ts";

export interface BuildOptions {
  out: string;
  archive: Archive;
  progress?: Progress;
  sshKeys?: string[];
  /** The baseline profile for the report, or false for none. */
  baseline?: Profile | false;
  /** Reuse a root image compressed earlier from an identical tree (default true). */
  imageCache?: boolean;
  /** The release version stamped into the image (default: YYYY.MM.DDHH of the archive state). */
  releaseVersion?: string;
  /** Put Berth's CLI and Node.js into the image (default true; the stock baseline goes without). */
  berthRuntime?: boolean;
}

export interface BuildResult {
  out: string;
  manifest: Manifest;
  baselineDir?: string;
  notes: string[];
}

/** Unmounts everything below `dir` (mmdebstrap mounts /proc, /sys, /dev inside the root while it runs). */
async function unmountBelow(dir: string): Promise<void> {
  const mounts = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4]?.replace(/\\040/g, " "))
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await run("umount", ["-l", m]);
}

/** Removes a scratch tree without crossing into mounted file systems. */
export async function removeTree(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  await unmountBelow(dir);
  await run("rm", ["-rf", "--one-file-system", dir]);
}

const pidAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Staging and scratch directories left by builds that were killed. */
async function removeStale(parent: string, prefix: string): Promise<void> {
  for (const e of await readdir(parent).catch(() => [] as string[])) {
    const m = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(\\d+)`).exec(e);
    if (m && !pidAlive(Number(m[1]))) await removeTree(join(parent, e));
  }
}

async function artifact(dir: string, file: string, zeros?: ByteRange[]): Promise<Artifact> {
  const p = join(dir, file);
  return { file, bytes: (await stat(p)).size, sha256: await sha256File(p, { zeros }) };
}

/**
 * Files the builder needs from the archive but does not install: busybox for the initramfs and check
 * image, systemd-boot for the ESP, sfdisk (fdisk and the libraries the image lacks) for the initramfs.
 */
async function helperDebs(
  plan: BuildPlan,
  archive: Archive,
): Promise<{ busybox: string; systemdBoot: string; sfdisk: string[] }> {
  const need = (name: string) => {
    const r = plan.index.candidate(name);
    if (!r)
      throw new BerthError(
        `${name} is not in ${plan.sources.suites.join(", ")}; Berth needs it to build images`,
      );
    return r;
  };
  const [busybox, systemdBoot, ...sfdisk] = await archive.fetchDebs([
    need("busybox-static"),
    need("systemd-boot-efi"),
    ...sfdiskPackages(plan),
  ]);
  return { busybox: busybox!, systemdBoot: systemdBoot!, sfdisk };
}

/** The repository's initial root.json the profile names (update.root): it must be a TUF root. */
async function readTrustedRoot(path: string): Promise<Buffer> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new UsageError(`update.root: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  let type: unknown;
  try {
    type = (JSON.parse(bytes.toString("utf8")) as { signed?: { _type?: unknown } }).signed?._type;
  } catch {
    throw new UsageError(`update.root: ${path} is not JSON`);
  }
  if (type !== "root")
    throw new UsageError(`update.root: ${path} is not a TUF root.json (signed._type "root")`);
  return bytes;
}

function profileDigest(p: Profile): string {
  return sha256Hex(readFileSync(p.source));
}

export async function buildImage(profile: Profile, o: BuildOptions): Promise<BuildResult> {
  const started = performance.now();
  const progress = o.progress ?? silentProgress;
  const out = resolve(o.out);
  const parent = dirname(out);
  await mkdir(parent, { recursive: true });
  await removeStale(parent, `.${basename(out)}.partial-`);
  const workParent = await o.archive.cache.dir("os", "work");
  await removeStale(workParent, "");

  const trustedRoot = profile.update.root ? await readTrustedRoot(profile.update.root) : undefined;
  const phases: Record<string, number> = {};
  const timed = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await f();
    } finally {
      phases[name] = Math.round((performance.now() - t0) / 100) / 10;
      // One line per phase with its time (a log without a terminal shows where a build spends it).
      progress.note(`${name}: ${phases[name]} s`);
    }
  };
  const plan = await timed("plan", () =>
    planBuild(profile, o.archive, { progress, berthRuntime: o.berthRuntime !== false }),
  );
  for (const n of plan.notes) progress.note(`note: ${n}`);

  const staging = join(parent, `.${basename(out)}.partial-${process.pid}`);
  const work = join(workParent, `${process.pid}-${profile.name}`);
  const cleanup = async () => {
    await removeTree(work);
    await removeTree(staging);
  };
  const unregister = onInterrupt(async (sig) => {
    process.stderr.write(`\nberth: ${sig}: stopping the build and removing its partial files\n`);
    await cleanup();
  });
  try {
    await cleanup();
    await mkdir(staging, { recursive: true });
    await mkdir(work, { recursive: true });
    const sde = plan.sourceDateEpoch;

    const releaseVersion = o.releaseVersion ?? defaultReleaseVersion(sde);
    const { helpers, runtimeFiles, baseDeb } = await timed("base", async () => {
      const helpers = await helperDebs(plan, o.archive);
      const checkImage = await buildBusyboxImage(helpers.busybox, sde);
      const runtimeFiles =
        o.berthRuntime === false ? [] : await berthRuntimeFiles(await o.archive.cache.dir("os", "runtime"));
      const baseDeb = await buildBasePackage(profile, checkImage.archive, work, sde, {
        release: { version: releaseVersion, sourceDateEpoch: sde, trustedRoot },
        files: runtimeFiles,
      });
      return { helpers, runtimeFiles, baseDeb };
    });

    const root = join(work, "root");
    progress.note(
      `building the root of ${profile.name} with mmdebstrap (${profile.variant}, ${plan.resolution.packages.length} packages)`,
    );
    await timed("mmdebstrap", () =>
      makeRootfs(plan, o.archive, work, root, { progress, localDebs: [baseDeb] }),
    );
    const custom = await timed("customize", () =>
      customizeRoot(root, profile, { progress, sourceDateEpoch: sde, extraKeys: o.sshKeys }),
    );
    const kv = custom.kernelVersion;
    const hardening =
      profile.hardening === "none"
        ? undefined
        : await timed("harden", async () => hardenRoot(root, profile.hardening, join(work, "harden")));

    // The kernel boots from the ESP; the root keeps only its config (for kernel-check).
    await copyFile(join(root, "boot", `vmlinuz-${kv}`), join(staging, "vmlinuz"));
    await copyFile(join(root, "boot", `config-${kv}`), join(staging, "kernel.config"));
    for (const f of await readdir(join(root, "boot")))
      if (!f.startsWith("config-")) await rm(join(root, "boot", f), { recursive: true, force: true });

    progress.note("initramfs");
    const initrd = await timed("initramfs", async () =>
      buildInitramfs({
        busyboxDeb: helpers.busybox,
        root,
        kernelVersion: kv,
        rootFsType: "squashfs",
        sourceDateEpoch: sde,
        verity: true,
        cacheDir: await o.archive.cache.dir("os", "initramfs"),
        // A root that installs fdisk (the baseline) has sfdisk itself; otherwise it comes from the .debs.
        programs: existsSync(join(root, "usr/sbin/sfdisk"))
          ? await programWithLibraries(root, "/usr/sbin/sfdisk")
          : await withDebsInRoot(root, helpers.sfdisk, (dir) =>
              programWithLibraries(root, `${dir}/usr/sbin/sfdisk`, `${dir}/usr/lib/x86_64-linux-gnu`),
            ),
      }),
    );
    await writeFile(join(staging, "initrd.img"), initrd);

    const inspected = await timed("inspect", () => inspectRoot(root));
    progress.note(`compressing the root (${profile.image.compression})`);
    await timed("squashfs", () =>
      compressRoot(
        root,
        join(staging, "root.squashfs"),
        profile.image.compression,
        sde,
        work,
        o.imageCache === false ? undefined : o.archive,
      ),
    );

    const seed = `${profile.name}/${profileDigest(profile)}`;
    progress.note("dm-verity hash tree");
    const verity = await timed("verity", () =>
      formatVerity(join(staging, "root.squashfs"), join(staging, "root.verity"), seed),
    );
    progress.note("disk image");
    const release: EntryRelease = {
      version: releaseVersion,
      verity: { rootHash: verity.rootHash, hashOffset: verity.hashOffset },
      bootOptions: profile.kernel.cmdline,
    };
    const cmdline = entryOptions(release, "a");
    await timed("esp", async () =>
      makeEsp({
        out: join(work, "esp.img"),
        sizeMiB: 64,
        systemdBoot: await extractSystemdBoot(helpers.systemdBoot, work),
        kernel: join(staging, "vmlinuz"),
        initrd: join(staging, "initrd.img"),
        release,
        seed,
      }),
    );
    const disk = await timed("disk", async () =>
      makeDisk({
        out: join(staging, "disk.img"),
        esp: join(work, "esp.img"),
        root: join(staging, "root.squashfs"),
        verity: { file: join(staging, "root.verity"), offset: verity.hashOffset },
        stateBytes: parseSize(profile.image.stateSize),
        stateContents: { dir: await stateSeed(root, join(work, "state-seed"), sde), sourceDateEpoch: sde },
        seed,
      }),
    );
    await writeFile(join(staging, "cmdline"), `${cmdline}\n`);

    const res = plan.resolution;
    const packages = inspected.packages.map((p) => {
      const chain = whyChain(res, p.name);
      const why =
        p.name === "berth-base"
          ? ["berth-base (Berth's configuration for this profile)"]
          : (chain?.map((c) => c.name) ?? ["(chosen by apt)"]);
      return { ...p, why };
    });
    const artifacts = await timed("digests", () =>
      Promise.all(
        ["root.squashfs", "vmlinuz", "initrd.img", "disk.img", "kernel.config", "root.verity"].map((f) =>
          artifact(staging, f, f === "disk.img" ? disk.unwritten : undefined),
        ),
      ),
    );
    const manifest: Manifest = {
      berthVersion: BERTH_VERSION,
      releaseVersion,
      profile: profile.name,
      profileSha256: profileDigest(profile),
      kernelVersion: kv,
      sourceDateEpoch: sde,
      archive: plan.archive,
      ...inspected,
      packages,
      purgedPackages: custom.purged,
      droppedModuleDirs: custom.droppedModuleDirs,
      droppedModuleBytes: custom.droppedModuleBytes,
      compressedBytes: artifacts[0]!.bytes,
      artifacts,
      buildSeconds: Math.round((performance.now() - started) / 100) / 10,
      phases,
      ...(hardening ? { hardening } : {}),
      berthRuntimeBytes: runtimeFiles.reduce((n, f) => n + f.content.length, 0),
      verity,
      update: {
        bootOptions: profile.kernel.cmdline,
        tries: profile.update.tries,
        images: profile.update.images,
        migrations: profile.update.migrations.map((m) => m.id),
        ...(profile.update.minimumFrom ? { minimumFrom: profile.update.minimumFrom } : {}),
        ...(profile.update.repository ? { repository: profile.update.repository } : {}),
        trustedRootSha256: trustedRoot ? sha256Hex(trustedRoot) : undefined,
      },
    };
    await writeFile(join(staging, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    await writeFile(join(staging, "profile.yaml"), await readFile(profile.source));

    let baselineDir: string | undefined;
    if (o.baseline) {
      baselineDir = await ensureBaseline(o.baseline, plan, o);
      const baseManifest = JSON.parse(await readFile(join(baselineDir, "manifest.json"), "utf8")) as Manifest;
      await writeReport(staging, manifest, baseManifest);
    } else await writeReport(staging, manifest, undefined);

    // Publish: the output directory changes in one rename.
    const old = `${out}.old-${process.pid}`;
    if (existsSync(out)) await rename(out, old);
    await rename(staging, out);
    await removeTree(old);
    return { out, manifest, baselineDir, notes: plan.notes };
  } finally {
    await removeTree(work);
    await removeTree(staging);
    unregister();
  }
}

/**
 * mksquashfs is most of a warm build's time. Its output depends only on the tree and the options, so a
 * root image made from a tree with the same content digest is reused from the cache. /opt (Berth's own
 * CLI bundle, opt/berth, which changes with every commit of Berth) is left out of that tree and appended
 * to the image afterwards (mksquashfs appends in seconds and deterministically), so a new Berth on the
 * same packages recompresses its 2 MB, not the whole root. Cached or not, the image is made the same way.
 */
async function compressRoot(
  root: string,
  out: string,
  compression: Profile["image"]["compression"],
  sde: number,
  work: string,
  archive?: Archive,
): Promise<void> {
  const opt = join(root, "opt");
  const appended = join(work, "appended");
  await rm(appended, { recursive: true, force: true });
  const hasOpt = existsSync(opt);
  if (hasOpt) {
    await mkdir(appended, { recursive: true });
    await rename(opt, join(appended, "opt"));
  }
  try {
    await compressBase(root, out, compression, sde, archive);
    if (hasOpt)
      await runChecked("mksquashfs (appending /opt)", "mksquashfs", [
        appended,
        out,
        "-no-recovery",
        "-no-progress",
        "-quiet",
        "-all-time",
        String(sde),
        "-mkfs-time",
        String(sde),
      ]);
  } finally {
    if (hasOpt) await rename(join(appended, "opt"), opt);
  }
}

async function compressBase(
  root: string,
  out: string,
  compression: Profile["image"]["compression"],
  sde: number,
  archive?: Archive,
): Promise<void> {
  if (!archive) return makeSquashfs(root, out, compression, sde);
  const dir = await archive.cache.dir("os", "images");
  const key = sha256Hex(`${await treeDigest(root)} ${squashfsArgs(compression, sde).join(" ")}`);
  const cached = join(dir, `${key}.squashfs`);
  if (existsSync(cached)) {
    await copyFile(cached, out);
    return;
  }
  await makeSquashfs(root, out, compression, sde);
  await copyFile(out, `${cached}.tmp-${process.pid}`);
  await rename(`${cached}.tmp-${process.pid}`, cached);
  // Keep the newest few (release fixtures, the default image and a test image or two).
  await pruneNewest(dir, ".squashfs", 8);
}

async function extractSystemdBoot(deb: string, work: string): Promise<string> {
  const efi = await readDebFile(deb, "usr/lib/systemd/boot/efi/systemd-bootx64.efi");
  if (!efi) throw new BerthError(`${deb} has no systemd-bootx64.efi`);
  const path = join(work, "systemd-bootx64.efi");
  await writeFile(path, efi);
  return path;
}

export async function writeReport(
  dir: string,
  image: Manifest,
  baseline: Manifest | undefined,
  boot: Report["boot"] = {},
): Promise<void> {
  const report = makeReport(image, baseline, new Date(), boot);
  await writeFileAtomic(join(dir, "report.json"), `${JSON.stringify(report, null, 2)}\n`);
  await writeFileAtomic(join(dir, "report.md"), reportMarkdown(report));
}

/**
 * The baseline image for a report, built once per (baseline profile, archive state) and kept in the
 * cache, so every image built from the same archive is compared with the same stock install.
 */
export async function ensureBaseline(baseline: Profile, plan: BuildPlan, o: BuildOptions): Promise<string> {
  const key = sha256Hex(
    JSON.stringify([BERTH_VERSION, profileDigest(baseline), plan.archive.map((a) => a.releaseSha256)]),
  ).slice(0, 16);
  const dir = join(await o.archive.cache.dir("os", "baselines"), `${baseline.name}-${key}`);
  if (existsSync(join(dir, "manifest.json"))) return dir;
  o.progress?.note(`building the ${baseline.name} baseline for this archive state (once; cached in ${dir})`);
  await buildImage(baseline, {
    ...o,
    out: dir,
    baseline: false,
    berthRuntime: false,
    releaseVersion: undefined,
  });
  return dir;
}
